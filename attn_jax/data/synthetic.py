"""Embedded romanized-Hindi -> English parallel corpus from a small synchronous grammar.

Every sentence pair is generated together with gold word alignments, deterministically from a
seed, in pure Python (no download). 50k pairs take a few seconds.

Grammar
-------
A clause is built from constituents; each constituent is a `Seg` (its Hindi tokens, its English
tokens and the links between them). A clause concatenates the constituents in Hindi order
(SOV, postpositions) for the source and in English order (SVO, prepositions) for the target.
Sentences join 1..8 clauses.

  construction      Hindi (source)                          English (target)
  clause            subj time comit loc from dest for io    subj verb obj io from dest for
                    obj manner verb                         manner loc comit time
  progressive       ja raha hoon, rahi hai, rahe hain       am / is / are going
  past progressive  kha raha tha, rahi thi, rahe the        was / were eating
  habitual          khata hai, nahin khati hai              eats, does not eat
  future            jaunga, khaegi, denge, nahin jaoge      will go, will eat, will not go
  simple past       vah gaya / gayi                         he / she went
  ergative past     ram ne kitab padhi (verb agrees with    ram read the book
                    the object), maine nahin khaya          i did not eat
  copula            sita khush hai, kitab mez par thi       sita is happy, the book was on the table
  noun phrase       [ram ka] [ek|yah|vah|mera|do] [adj] N   [the|a|this|that|my|two] [adj] N
                                                            [of ram]
  postpositions     ghar mein, mez par, dost ke saath,      in the house, on the table, with the
                    ped ke saamne, mere liye, bazaar se     friend, in front of the tree, for me,
                                                            from the market
  objects           khana; ladke ko; ram se (meet);         the food; the boy; ram;
                    ram se (talk); ram ko kitab (give)      to ram; the book to ram
  destination       ghar / bazaar / dilli                   home / to the market / to delhi
  coordination      A aur|lekin|ya|isliye B                 A and|but|or|so B
  subordination     A kyonki B; agar A to B; jab A tab B;   A because B; if A then B; when A B;
                    X kehta hai ki B                        X says that B

Hindi agreement is deterministic: verbs, auxiliaries, adjectives, possessives and "ka/ki/ke"
follow gender, number, person and case (direct / oblique: ladka -> ladke ko, do ladkon ne).
The English side is a function of the Hindi side: "the" for a common noun without determiner,
"a/an" from "ek", vah -> he/she from the verb's gender, kal -> yesterday/tomorrow from tense,
verb agreement from the Hindi subject. Plural nouns only appear after a number word, and the
subject "vah" is never used where its gender would be invisible (copula, ergative past).

Alignments (sure S, possible P; P includes S)
---------------------------------------------
Conventions follow human annotation guidelines (Och & Ney 2003, "A Systematic Comparison of
Various Statistical Alignment Models", sec. 5: S for unambiguous links, P for ambiguous ones,
idioms / free translations and function words without a counterpart; the Blinker guidelines,
Melamed 1998: phrases that translate as a whole are linked as units).

  unit                          S links                          P links (besides S)
  content words, fused forms    word <-> translation, also       -
                                1:n / n:1 (ja raha -> going,
                                kaam kar -> work, roz -> every
                                day, ke saamne -> in front of)
  article "the" (no Hindi word) -                                the -> adjective + noun of its NP
  determiner a/this/my/two      -> ek/yah/mera/do                -
  preposition (PP as a unit)    -> its postposition (in-mein,    preposition -> every word of the
                                from-se, to-ko, for-liye, of-ka) Hindi NP it governs; "ke" of
                                                                 "ke paas/liye/saath/saamne"
  destination "to" (no word)    -                                to -> every word of the Hindi NP
  ko / ne / se without English  -                                -> the, adjective, noun of the
  counterpart                                                    English NP
  idiom "kal raat"              kal-last, raat-night             kal-night, raat-last (all pairs)
  "is/us samay", "shaam ko"     is-this, samay-time, shaam-      at / in -> every word of the unit
                                evening
  be-auxiliary (progressive)    am/is/are/was/were -> hoon/hai/  -> "nahin" when negated (English
                                hain/ho/tha; raha -> the -ing    negation sits on the auxiliary)
                                verb (the running example)
  will, do-support do/does/did  will/did -> inflected verb,      -> every word of the Hindi verb
                                does/do -> hai; not -> nahin     group (nahin, light-verb noun,
                                                                 main verb, auxiliary)
  habitual "hai", "tab"         -                                hai -> English verb; tab -> when
  copula                        is/are/am/was/were -> hai/.../   -> the predicate head (adjective,
                                tha; not -> nahin                or the noun of a locative, as in
                                                                 UD), -> "nahin" when negated

The be-auxiliary of the progressive gets no P link to "raha" or the main verb: "raha" is the
progressive aspect and is S-linked to the "-ing" verb, and the running example
"mai ghar ja raha hoon" -> "i am going home" keeps exactly the sure links i-mai, am-hoon,
going-ja, going-raha, home-ghar (no possible links). Every English token has at least one
link. Oracle argmax attention (the best link for each target token) still has AER about 0.04,
because one-to-many sure links (going <- ja raha) count against a single argmax.

Splits
------
`valid` follows the train distribution (so its loss tracks training); `test` is stratified, an
equal share per source-length bucket (`attn_jax.data.lengths`), so long-sentence BLEU is measured
on hundreds of sentences. Splits are disjoint by source sentence (test drawn first, then valid,
then train; duplicates within a split are dropped too).

The running example is held out: no pair whose source is "mai ghar ja raha hoon" is in train or
valid; it is example 0 of the test split (one of the 1-10 bucket's share). Longer sentences
that contain it as one of their clauses are ordinary sentences and may be in any split.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import random
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from attn_jax.data.lengths import LENGTH_BUCKETS, length_bucket

# The identity of the data this grammar generates: recorded in every run's vocab/meta.json (a
# run resumes only on the same data) and in the prepared data's folder name. Change it with any
# edit that changes what `generate_splits` returns; tests/test_synthetic.py pins a digest of the
# output so that a forgotten change fails. "9ecceb74" is the hash of this file's source that
# identified the generator until the version was declared, so earlier runs still resume.
GENERATOR_VERSION = "9ecceb74"

__all__ = ["Example", "GENERATOR_VERSION", "RUNNING_EXAMPLE", "LENGTH_BUCKETS", "length_bucket",
           "generate_splits",
           "sample_example", "format_links", "parse_links"]

MIN_SRC_LEN, MAX_SRC_LEN = 3, 60
Link = tuple[int, int]  # (src_idx, tgt_idx)


@dataclasses.dataclass(frozen=True)
class Example:
    src: str                          # romanized Hindi, lowercase, single spaces, no punctuation
    tgt: str                          # English, lowercase, single spaces, no punctuation
    sure: tuple[Link, ...]            # (src_idx, tgt_idx), sorted
    possible: tuple[Link, ...]        # superset of sure, sorted


def format_links(links) -> str:
    """((0, 1), (2, 3)) -> "0-1 2-3" (Pharaoh order src-tgt)."""
    return " ".join(f"{i}-{j}" for i, j in links)


def parse_links(s: str) -> tuple[Link, ...]:
    """"0-1 2-3" -> ((0, 1), (2, 3))."""
    return tuple((int(i), int(j)) for i, j in (tok.split("-") for tok in s.split()))


# ---------------------------------------------------------------------------------------------
# Segments: aligned pieces of a sentence
# ---------------------------------------------------------------------------------------------


class Seg(NamedTuple):
    src: tuple[str, ...]
    tgt: tuple[str, ...]
    links: tuple[tuple[int, int, bool], ...]  # (src_idx, tgt_idx, sure)


@functools.cache
def lex(hi: str, en: str, links: str | None = None) -> Seg:
    """A fixed phrase. `links` like "0-0 1-0p" (p: possible); default: all pairs sure."""
    src, tgt = tuple(hi.split()), tuple(en.split())
    if links is None:
        return Seg(src, tgt, tuple((i, j, True) for i in range(len(src)) for j in range(len(tgt))))
    parsed = tuple((i, j, not tok.endswith("p"))
                   for tok in links.split() for i, j in [parse_links(tok.rstrip("p"))[0]])
    return Seg(src, tgt, parsed)


@functools.cache
def _names(order: str) -> tuple[str, ...]:
    return tuple(order.split())


def combine(parts: Mapping[str, Seg | None], hi_order: str, en_order: str,
            extra: Sequence[tuple[tuple[str, int], tuple[str, int], bool]] = ()) -> Seg:
    """Concatenates named segments in Hindi order (source) and English order (target).

    `extra` adds links across segments: ((name, src_idx), (name, tgt_idx), sure).
    """
    src: list[str] = []
    tgt: list[str] = []
    src_off: dict[str, int] = {}
    tgt_off: dict[str, int] = {}
    for name in _names(hi_order):
        if (part := parts.get(name)) is not None:
            src_off[name] = len(src)
            src += part.src
    for name in _names(en_order):
        if (part := parts.get(name)) is not None:
            tgt_off[name] = len(tgt)
            tgt += part.tgt
    links = []
    for name, part in parts.items():
        if part is not None and part.links:
            di, dj = src_off[name], tgt_off[name]
            links += [(i + di, j + dj, s) for i, j, s in part.links]
    links += [(i + src_off[a], j + tgt_off[b], s) for (a, i), (b, j), s in extra]
    return Seg(tuple(src), tuple(tgt), tuple(links))


def to_example(seg: Seg) -> Example:
    sure = sorted({(i, j) for i, j, s in seg.links if s})
    possible = sorted({(i, j) for i, j, _ in seg.links})
    return Example(" ".join(seg.src), " ".join(seg.tgt), tuple(sure), tuple(possible))


# ---------------------------------------------------------------------------------------------
# Lexicon
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Noun:
    hi: tuple[str, str, str, str]  # direct sg, oblique sg, direct pl, oblique pl
    en: tuple[str, str]            # sg, pl
    gender: str                    # "m" | "f"
    kind: str  # person animal food drink text thing open furniture tree place city name
    count: bool = True             # takes "ek" and numbers

    @property
    def proper(self) -> bool:
        return self.kind in ("name", "city")


def _noun(hi: str, en: str, gender: str, kind: str, en_pl: str = "", hi_forms: str = "",
          count: bool = True) -> Noun:
    """Regular Hindi and English plurals unless given."""
    if hi_forms:
        forms = tuple(hi_forms.split(","))
    elif kind in ("name", "city"):
        forms = (hi,) * 4
    elif gender == "m" and hi.endswith("a"):
        forms = (hi, hi[:-1] + "e", hi[:-1] + "e", hi[:-1] + "on")        # ladka ladke ladke ladkon
    elif gender == "m":
        forms = (hi, hi, hi, hi + ("yon" if hi.endswith("i") else "on"))  # ghar gharon, aadmiyon
    elif hi.endswith("ya"):
        forms = (hi, hi, hi + "n", hi[:-1] + "on")                         # chidiya chidiyan
    elif hi.endswith("i"):
        forms = (hi, hi, hi + "yan", hi + "yon")                           # ladki ladkiyan
    else:
        forms = (hi, hi, hi + "en", hi + "on")                             # kitab kitaben
    if not en_pl:
        en_pl = (en[:-1] + "ies" if en.endswith("y") and en[-2] not in "aeiou"
                 else en + "es" if en.endswith(("s", "sh", "ch", "x")) else en + "s")
    return Noun(forms, (en, en_pl), gender, kind, count and kind not in ("name", "city"))


NOUNS = [_noun(*row) for row in [
    ("ladka", "boy", "m", "person"), ("ladki", "girl", "f", "person"),
    ("aadmi", "man", "m", "person", "men"), ("aurat", "woman", "f", "person", "women"),
    ("bachcha", "child", "m", "person", "children"), ("dost", "friend", "m", "person"),
    ("shikshak", "teacher", "m", "person"), ("doctor", "doctor", "m", "person"),
    ("kisan", "farmer", "m", "person"),
    ("raja", "king", "m", "person", "", "raja,raja,raja,rajaon"),
    ("rani", "queen", "f", "person"), ("chhatra", "student", "m", "person"),
    ("bhai", "brother", "m", "person"), ("behen", "sister", "f", "person"),
    ("padosi", "neighbour", "m", "person"), ("naukar", "servant", "m", "person"),
    ("kutta", "dog", "m", "animal"), ("billi", "cat", "f", "animal"),
    ("ghoda", "horse", "m", "animal"), ("gaay", "cow", "f", "animal"),
    ("chidiya", "bird", "f", "animal"), ("bandar", "monkey", "m", "animal"),
    ("haathi", "elephant", "m", "animal"), ("sher", "lion", "m", "animal"),
    ("khana", "food", "m", "food", "", "", False), ("seb", "apple", "m", "food"),
    ("aam", "mango", "m", "food", "mangoes"), ("kela", "banana", "m", "food"),
    ("roti", "bread", "f", "food", "", "", False), ("chawal", "rice", "m", "food", "", "", False),
    ("anda", "egg", "m", "food"), ("mithai", "sweet", "f", "food"),
    ("sabzi", "vegetable", "f", "food"),
    ("pani", "water", "m", "drink", "", "", False), ("chai", "tea", "f", "drink", "", "", False),
    ("doodh", "milk", "m", "drink", "", "", False),
    ("coffee", "coffee", "f", "drink", "", "", False),
    ("kitab", "book", "f", "text"), ("chitthi", "letter", "f", "text"),
    ("akhbar", "newspaper", "m", "text"), ("kahani", "story", "f", "text"),
    ("kavita", "poem", "f", "text", "", "kavita,kavita,kavitayen,kavitaon"),
    ("kalam", "pen", "f", "thing"), ("ghadi", "watch", "f", "thing"),
    ("gaadi", "car", "f", "thing"), ("phool", "flower", "m", "thing"),
    ("tasveer", "picture", "f", "thing"), ("thaila", "bag", "m", "thing"),
    ("botal", "bottle", "f", "thing"), ("chaabi", "key", "f", "thing"),
    ("kameez", "shirt", "f", "thing"), ("chhata", "umbrella", "m", "thing"),
    ("khilauna", "toy", "m", "thing"), ("phone", "phone", "m", "thing"),
    ("darwaza", "door", "m", "open"), ("khidki", "window", "f", "open"),
    ("dibba", "box", "m", "open"),
    ("mez", "table", "f", "furniture"), ("kursi", "chair", "f", "furniture"),
    ("palang", "bed", "m", "furniture"), ("almari", "cupboard", "f", "furniture"),
    ("ped", "tree", "m", "tree"),
    ("ghar", "house", "m", "place"), ("bazaar", "market", "m", "place"),
    ("school", "school", "m", "place"), ("daftar", "office", "m", "place"),
    ("bagicha", "garden", "m", "place"), ("shahar", "city", "m", "place"),
    ("gaon", "village", "m", "place"), ("dukaan", "shop", "f", "place"),
    ("mandir", "temple", "m", "place"), ("station", "station", "m", "place"),
    ("aspatal", "hospital", "m", "place"), ("park", "park", "m", "place"),
    ("kamra", "room", "m", "place"), ("rasoi", "kitchen", "f", "place"),
    ("nadi", "river", "f", "place"), ("jungle", "forest", "m", "place"),
    ("pustakalay", "library", "m", "place"),
]] + [_noun(hi, en, "m", "city") for hi, en in [
    ("dilli", "delhi"), ("mumbai", "mumbai"), ("agra", "agra"), ("jaipur", "jaipur"),
    ("london", "london"), ("kolkata", "kolkata"), ("chennai", "chennai"), ("pune", "pune"),
    ("goa", "goa"), ("lucknow", "lucknow"), ("patna", "patna"), ("amrika", "america")]
] + [_noun(name, name, g, "name") for name, g in [
    ("ram", "m"), ("sita", "f"), ("mohan", "m"), ("priya", "f"), ("amit", "m"), ("neha", "f"),
    ("ravi", "m"), ("anita", "f"), ("raj", "m"), ("pooja", "f"), ("vijay", "m"), ("meena", "f"),
    ("arjun", "m"), ("geeta", "f"), ("suresh", "m"), ("rekha", "f")]]
NOUN = {n.hi[0]: n for n in NOUNS}


@functools.cache
def nouns(kinds: str) -> tuple[Noun, ...]:
    return tuple(n for n in NOUNS if n.kind in kinds.split())


ANIMATE = "person animal name"
THINGS = "thing open furniture text"


@dataclasses.dataclass(frozen=True)
class Adj:
    hi: str  # masculine direct singular; "-a" adjectives inflect (bada badi bade)
    en: str
    kinds: str

    def form(self, gender: str, plural_or_oblique: bool) -> str:
        if not self.hi.endswith("a"):
            return self.hi
        return self.hi[:-1] + ("i" if gender == "f" else "e" if plural_or_oblique else "a")


ADJS = [Adj(*row) for row in [
    ("bada", "big", "person animal thing open furniture place tree"),
    ("chhota", "small", "person animal thing open furniture place tree"),
    ("accha", "good", "person animal food drink text thing place"),
    ("bura", "bad", "person animal food drink text thing place"),
    ("naya", "new", "text thing open furniture place"),
    ("purana", "old", "person animal text thing open furniture place tree"),
    ("lamba", "tall", "person tree"), ("mota", "fat", "person animal"),
    ("patla", "thin", "person animal"), ("kala", "black", "animal thing open furniture"),
    ("safed", "white", "animal thing open furniture"), ("lal", "red", "thing open furniture"),
    ("neela", "blue", "thing open furniture"), ("hara", "green", "thing open furniture tree"),
    ("peela", "yellow", "thing open furniture"),
    ("sundar", "beautiful", "person animal thing place"),
    ("khush", "happy", "person animal name"), ("udaas", "sad", "person animal name"),
    ("bimaar", "sick", "person animal name"), ("gareeb", "poor", "person name"),
    ("ameer", "rich", "person name"), ("tez", "fast", "animal"),
    ("garam", "hot", "food drink"), ("thanda", "cold", "food drink"),
    ("meetha", "sweet", "food drink"), ("ganda", "dirty", "thing open furniture place"),
]]


@functools.cache
def adjectives(kind: str) -> tuple[Adj, ...]:
    return tuple(a for a in ADJS if kind in a.kinds.split())


@dataclasses.dataclass(frozen=True)
class Pronoun:
    hi: str
    erg: str | None   # ergative form ("maine"); None where the English gender would be unknown
    en: str           # subject; "he/she" = masculine/feminine
    person: str       # Hindi agreement: 1, 2 (tum), 3, pl (aap, ham, ve)
    genders: str
    ko: str | None    # object / dative form ("mujhe")
    se: str | None    # with "se" ("mujhse")
    gen: str | None   # possessive stem ("mer" -> mera meri mere; "mere saath")
    en_obj: str | None
    en_poss: str | None


PRONOUNS = [Pronoun(*row) for row in [
    ("mai", "maine", "i", "1", "mf", "mujhe", "mujhse", "mer", "me", "my"),
    ("tum", "tumne", "you", "2", "mf", "tumhen", "tumse", "tumhar", "you", "your"),
    ("aap", "aapne", "you", "pl", "mf", "aapko", "aapse", "aapk", "you", "your"),
    ("vah", None, "he/she", "3", "mf", None, None, None, None, None),
    ("ham", "hamne", "we", "pl", "m", "hamen", "hamse", "hamar", "us", "our"),
    ("ve", "unhone", "they", "pl", "m", "unhen", "unse", "unk", "them", "their"),
]]
PRONOUN = {p.hi: p for p in PRONOUNS}
OBJ_PRONOUNS = [p for p in PRONOUNS if p.ko]
ERG_PRONOUNS = [p for p in PRONOUNS if p.erg]


@dataclasses.dataclass(frozen=True)
class Det:
    hi: str          # direct case (stem if it agrees)
    hi_obl: str
    en: str
    agrees: bool = False  # takes -a/-i/-e like an adjective (mera)
    plural: bool = False  # numbers: the noun is plural


DETS = {"ek": Det("ek", "ek", "a"), "yah": Det("yah", "is", "this"),
        "vah": Det("vah", "us", "that")}
POSS_DETS = [Det(p.gen, p.gen, p.en_poss, agrees=True) for p in PRONOUNS if p.gen]
NUM_DETS = [Det(hi, hi, en, plural=True) for hi, en in [
    ("do", "two"), ("teen", "three"), ("char", "four"), ("paanch", "five"), ("chhah", "six"),
    ("saat", "seven"), ("aath", "eight"), ("nau", "nine"), ("das", "ten")]]


@dataclasses.dataclass(frozen=True)
class Verb:
    frame: str         # motion intr obj ko se ditr say
    hi: str            # stem; the last word inflects ("kaam kar")
    en: tuple[str, str, str, str]  # base, 3sg, -ing, past
    objects: str = ""  # noun kinds of the object (obj, ditr)
    tenses: tuple[str, ...] = ("prog", "pprog", "hab", "fut", "past")
    erg: bool = True   # past takes "ne" (transitive)
    gender: str = "m"  # agreement of the ergative past without an agreeing object
    past: str = ""     # irregular past (masculine singular)
    fut: str = ""      # irregular future stem
    prep: str = ""     # English preposition after the verb for "se" objects (talk to)


def _verb(frame, hi, en, objects="", tenses="", **kw) -> Verb:
    return Verb(frame, hi, tuple(en.split("|")), objects,
                tuple(tenses.split()) or Verb.tenses, **kw)


VERBS = [
    _verb("motion", "ja", "go|goes|going|went", erg=False, past="gaya"),
    _verb("motion", "aa", "come|comes|coming|came", erg=False),
    _verb("motion", "laut", "return|returns|returning|returned", erg=False),
    _verb("motion", "daud", "run|runs|running|ran", erg=False),
    _verb("intr", "so", "sleep|sleeps|sleeping|slept", erg=False),
    _verb("intr", "baith", "sit|sits|sitting|sat", erg=False),
    _verb("intr", "hans", "laugh|laughs|laughing|laughed", erg=False),
    _verb("intr", "ro", "cry|cries|crying|cried", erg=False),
    _verb("intr", "khel", "play|plays|playing|played", erg=False),
    _verb("intr", "tair", "swim|swims|swimming|swam", erg=False),
    _verb("intr", "naach", "dance|dances|dancing|danced", erg=False),
    _verb("intr", "kaam kar", "work|works|working|worked", past="kiya"),
    _verb("intr", "aaram kar", "rest|rests|resting|rested", past="kiya"),
    _verb("intr", "intezaar kar", "wait|waits|waiting|waited", past="kiya"),
    _verb("obj", "kha", "eat|eats|eating|ate", "food"),
    _verb("obj", "pi", "drink|drinks|drinking|drank", "drink", fut="piy"),
    _verb("obj", "padh", "read|reads|reading|read", "text"),
    _verb("obj", "likh", "write|writes|writing|wrote", "text"),
    _verb("obj", "khareed", "buy|buys|buying|bought", "food thing text open furniture"),
    _verb("obj", "bech", "sell|sells|selling|sold", "food thing open furniture"),
    _verb("obj", "bana", "make|makes|making|made", "food thing open furniture"),
    _verb("obj", "dho", "wash|washes|washing|washed", "thing furniture"),
    _verb("obj", "khol", "open|opens|opening|opened", "open text"),
    _verb("obj", "band kar", "close|closes|closing|closed", "open", past="kiya"),
    _verb("obj", "saaf kar", "clean|cleans|cleaning|cleaned", "thing furniture place open",
          past="kiya"),
    _verb("obj", "pasand kar", "like|likes|liking|liked", "food drink thing text", "hab past",
          past="kiya"),
    _verb("obj", "dhoondh", "look for|looks for|looking for|looked for", "thing text open"),
    _verb("obj", "dekh", "watch|watches|watching|watched", "thing tree"),
    _verb("ko", "dekh", "watch|watches|watching|watched"),
    _verb("ko", "bula", "call|calls|calling|called"),
    _verb("ko", "dhoondh", "look for|looks for|looking for|looked for"),
    _verb("ko", "yaad kar", "remember|remembers|remembering|remembered", past="kiya"),
    _verb("se", "mil", "meet|meets|meeting|met", erg=False),
    _verb("se", "baat kar", "talk|talks|talking|talked", past="kiya", gender="f", prep="to"),
    _verb("se", "pyaar kar", "love|loves|loving|loved", tenses="hab past", past="kiya"),
    _verb("ditr", "de", "give|gives|giving|gave", "food drink thing text", past="diya", fut="d"),
    _verb("ditr", "dikha", "show|shows|showing|showed", "thing text"),
    _verb("ditr", "bhej", "send|sends|sending|sent", "thing text"),
    _verb("say", "keh", "say|says|saying|said", tenses="hab fut past", past="kaha"),
    _verb("say", "soch", "think|thinks|thinking|thought", tenses="hab pprog past"),
    _verb("say", "jaan", "know|knows|knowing|knew", tenses="hab"),
    _verb("say", "sun", "hear|hears|hearing|heard", tenses="past"),
]
VERB = {(v.frame, v.hi): v for v in VERBS}

# Fixed phrases (links default to all-sure; "p" marks possible links).
TIMES = {
    "prog": [lex("abhi", "now"), lex("aaj", "today"),
             lex("is samay", "at this time", "0-1 1-2 0-0p 1-0p")],
    "pprog": [lex("kal", "yesterday"), lex("us samay", "at that time", "0-1 1-2 0-0p 1-0p"),
              lex("kal raat", "last night", "0-0 1-1 0-1p 1-0p")],
    "hab": [lex("roz", "every day"), lex("har hafte", "every week", "0-0 1-1"),
            lex("kabhi kabhi", "sometimes"), lex("aksar", "often"),
            lex("subah", "in the morning", "0-2 0-0p 0-1p")],
    "fut": [lex("kal", "tomorrow"), lex("agle hafte", "next week", "0-0 1-1"),
            lex("agle saal", "next year", "0-0 1-1"), lex("aaj", "today"),
            lex("shaam ko", "in the evening", "0-2 1-0p 0-1p 0-0p")],
    "past": [lex("kal", "yesterday"), lex("pichhle hafte", "last week", "0-0 1-1"),
             lex("pichhle saal", "last year", "0-0 1-1"), lex("aaj", "today"),
             lex("kal raat", "last night", "0-0 1-1 0-1p 1-0p")],
}
TIMES["cop_pres"], TIMES["cop_past"] = TIMES["prog"][:2], TIMES["past"]
MANNERS = [lex("dhire dhire", "slowly"), lex("jaldi", "quickly"), lex("dhyan se", "carefully"),
           lex("khushi se", "happily"), lex("zor se", "loudly"), lex("chupchap", "quietly"),
           lex("mehnat se", "hard")]
# Locative postpositions: (phrase, noun kinds it takes).
LOCATIVES = [
    (lex("mein", "in"), "place city"), (lex("par", "on"), "furniture"),
    (lex("ke paas", "near", "1-0 0-0p"), "place furniture tree"),
    (lex("ke neeche", "under", "1-0 0-0p"), "furniture tree"),
    (lex("ke saamne", "in front of", "1-0 1-1 1-2 0-0p 0-1p 0-2p"), "place tree"),
    (lex("ke peeche", "behind", "1-0 0-0p"), "place tree"),
    (lex("ke andar", "inside", "1-0 0-0p"), "place"),
    (lex("ke bahar", "outside", "1-0 0-0p"), "place"),
]
CONJUNCTIONS = {"aur": "and", "lekin": "but", "ya": "or", "isliye": "so", "kyonki": "because"}

# ---------------------------------------------------------------------------------------------
# Realization: noun phrases, verb groups, clauses
# ---------------------------------------------------------------------------------------------


class NP(NamedTuple):
    noun: Noun
    det: Det | None = None
    adj: Adj | None = None
    owner: Noun | None = None  # genitive: "ram ka ghar" -> "the house of ram"

    @property
    def plural(self) -> bool:
        return self.det is not None and self.det.plural


def _agree(gender: str, plural_or_oblique: bool) -> str:
    """Hindi -a/-i/-e ending (raha rahi rahe, mera meri mere, ka ki ke)."""
    return "i" if gender == "f" else "e" if plural_or_oblique else "a"


def np_seg(np: NP, oblique: bool) -> tuple[Seg, int, int]:
    """Realizes a noun phrase; returns (seg, head src index, head tgt index)."""
    noun, g, pl = np.noun, np.noun.gender, np.plural
    hi: list[str] = []
    en: list[str] = []
    links: list[tuple[int, int, bool]] = []
    det = np.det
    if det is not None:
        hi.append(det.hi + _agree(g, pl or oblique) if det.agrees
                  else det.hi_obl if oblique else det.hi)
        links.append((len(hi) - 1, 0, True))
        en.append(det.en)
    elif not noun.proper:
        en.append("the")
    owner_at = len(hi)
    if np.owner is not None:
        hi += [np.owner.hi[1], "k" + _agree(g, pl or oblique)]
    if np.adj is not None:
        hi.append(np.adj.form(g, pl or oblique))
        en.append(np.adj.en)
        links.append((len(hi) - 1, len(en) - 1, True))
    hs, ht = len(hi), len(en)
    hi.append(noun.hi[2 * pl + oblique])
    en.append(noun.en[pl])
    links.append((hs, ht, True))
    if en[0] == "the":   # article without counterpart: P to the adjective and the noun
        links += [(i, 0, False) for i in range(owner_at + 2 * (np.owner is not None), hs + 1)]
    elif en[0] == "a" and en[1][0] in "aeiou":
        en[0] = "an"
    if np.owner is not None:   # "ram ka" -> "of ram": of-ka S, of-ram P (PP unit)
        en += ["of"] + ([] if np.owner.proper else ["the"]) + [np.owner.en[0]]
        links += [(owner_at + 1, ht + 1, True), (owner_at, len(en) - 1, True),
                  (owner_at, ht + 1, False)]
        if not np.owner.proper:
            links.append((owner_at, ht + 2, False))
    return Seg(tuple(hi), tuple(en), tuple(links)), hs, ht


def np_with(np: NP, post: Seg, unmatched: int | None = None) -> Seg:
    """Oblique NP + Hindi postposition -> English preposition + NP.

    The prepositional phrase is a unit: every English preposition word gets P links to every
    word of the Hindi NP (besides its own links to the postposition). `unmatched=i`: postposition
    token i has no English counterpart ("ko", "se") and gets P links to the English NP.
    """
    seg, _, ht = np_seg(np, oblique=True)
    extra = [(("np", i), ("post", j), False)
             for i in range(len(seg.src)) for j in range(len(post.tgt))]
    if unmatched is not None:
        extra += [(("post", unmatched), ("np", j), False) for j in range(ht + 1)]
    return combine({"np": seg, "post": post}, "np post", "post np", extra)


def pronoun_with(p: Pronoun, post: str, prep: str) -> Seg:
    """ke saath -> mere saath -> with me; ke liye -> mere liye -> for me."""
    return lex(f"{p.gen}e {post.removeprefix('ke ')}", f"{prep} {p.en_obj}", "0-1 1-0 0-0p")


class Agr(NamedTuple):
    """Hindi agreement features of whatever the verb agrees with."""
    person: str  # 1 2 3 pl
    gender: str

    @property
    def plural(self) -> bool:
        return self.person in ("2", "pl")

    @property
    def en(self) -> str:  # English agreement class
        return {"1": "1sg", "3": "3sg"}.get(self.person, "pl")


AUX_PRESENT = {"1": "hoon", "2": "ho", "3": "hai", "pl": "hain"}
FUTURE = {"1": "unga", "2": "oge", "3": "ega", "pl": "enge"}
BE = {"prog": {"1sg": "am", "3sg": "is", "pl": "are"},
      "pprog": {"1sg": "was", "3sg": "was", "pl": "were"},
      "cop_pres": {"1sg": "am", "3sg": "is", "pl": "are"},
      "cop_past": {"1sg": "was", "3sg": "was", "pl": "were"}}


def _past(v: Verb, agr: Agr) -> str:
    root = v.hi.split()[-1]
    m = v.past or (root + "ya" if root[-1] in "aeiou" else root + "a")  # khaya, likha
    if agr.gender == "f":
        return m[:-3] + "i" if m.endswith("iya") else m[:-1] + "i"     # ki di / khayi likhi
    return m[:-1] + "e" if agr.plural else m


def verb_seg(v: Verb, tense: str, neg: bool, agr: Agr, en_agr: str) -> Seg:
    """Hindi verb group (agreeing with `agr`) and English verb group (agreeing with `en_agr`)."""
    *pre, root = v.hi.split()
    base, s3, ing, past = v.en
    g, pl = agr.gender, agr.plural
    en_aux, en_main, hi_aux = None, base, []
    if tense in ("prog", "pprog"):
        main = [root, "rah" + _agree(g, pl)]
        hi_aux = [AUX_PRESENT[agr.person] if tense == "prog" else "th" + _agree(g, pl)]
        en_aux, en_main = BE[tense][en_agr], ing
    elif tense == "hab":
        main, hi_aux = [root + "t" + _agree(g, pl)], [AUX_PRESENT[agr.person]]
        if neg:
            en_aux = "does" if en_agr == "3sg" else "do"
        else:
            en_main = s3 if en_agr == "3sg" else base
    elif tense == "fut":
        end = FUTURE[agr.person]
        main, en_aux = [(v.fut or root) + (end[:-1] + "i" if g == "f" else end)], "will"
    else:  # past
        main = [_past(v, agr)]
        if neg:
            en_aux = "did"
        else:
            en_main = past
    hi = ["nahin"] * neg + pre + main + hi_aux
    en = [en_aux] * (en_aux is not None) + ["not"] * neg + en_main.split()
    n_pre, n_en_pre = neg + len(pre), (en_aux is not None) + neg
    links = [(i, j, True) for i in range(neg, neg + len(pre) + len(main))
             for j in range(n_en_pre, len(en))]
    if neg:
        links.append((0, n_en_pre - 1, True))
    aux_src = range(n_pre + len(main), len(hi))  # the Hindi auxiliary (hai, tha), if any
    if en_aux is not None:
        links += [(i, 0, True) for i in aux_src]
        if tense in ("fut", "past"):
            links.append((n_pre, 0, True))   # will / did <- the inflected verb
        if en_aux in ("will", "do", "does", "did"):   # no Hindi word of their own: P to the group
            links += [(i, 0, False) for i in range(len(hi))]
        elif neg:   # "is not" <- "nahin ... hai": the auxiliary carries the English negation
            links.append((0, 0, False))
    else:
        links += [(i, j, False) for i in aux_src for j in range(n_en_pre, len(en))]
    return Seg(tuple(hi), tuple(en), tuple(links))


# A subject is a pronoun with its gender, or a noun phrase.
Subject = tuple[Pronoun, str] | NP
CLAUSE_HI = "subj time comit loc from dest for io obj manner verb"
CLAUSE_EN = "subj verb obj io from dest for manner loc comit time"


def subject_agr(subj: Subject) -> Agr:
    if isinstance(subj, NP):
        return Agr("pl" if subj.plural else "3", subj.noun.gender)
    return Agr(subj[0].person, subj[1])


def subject_seg(subj: Subject, ergative: bool) -> tuple[Seg, Agr]:
    if isinstance(subj, NP):
        seg, _, ht = np_seg(subj, oblique=ergative)
        if ergative:   # "ne" has no English counterpart: P links to the English NP
            seg = combine({"np": seg, "ne": Seg(("ne",), (), ())}, "np ne", "np ne",
                          [(("ne", 0), ("np", j), False) for j in range(ht + 1)])
        return seg, subject_agr(subj)
    p, gender = subj
    en = p.en.split("/")[gender == "f"] if "/" in p.en else p.en
    return lex(p.erg if ergative else p.hi, en), subject_agr(subj)


def clause(subj: Subject, verb: Verb, tense: str, neg: bool = False,
           obj_agr: Agr | None = None, **parts: Seg | None) -> Seg:
    """One clause. `parts` are realized constituents named as in CLAUSE_HI (from: `from_`)."""
    ergative = tense == "past" and verb.erg
    subj_seg, agr = subject_seg(subj, ergative)
    verb_agr = (obj_agr or Agr("3", verb.gender)) if ergative else agr
    named = {k.rstrip("_"): v for k, v in parts.items()}
    named.update(subj=subj_seg, verb=verb_seg(verb, tense, neg, verb_agr, agr.en))
    return combine(named, CLAUSE_HI, CLAUSE_EN)


def copula(subj: Subject, pred: Seg, tense: str, neg: bool = False, time: Seg | None = None,
           pred_head: int = 0) -> Seg:
    """"sita khush hai" -> "sita is happy"; tense is cop_pres or cop_past.

    The English copula is S-linked to the Hindi one and P-linked to the predicate's head word
    `pred_head` (the adjective, or the noun of a locative) and to "nahin".
    """
    subj_seg, agr = subject_seg(subj, ergative=False)
    aux = AUX_PRESENT[agr.person] if tense == "cop_pres" else "th" + _agree(agr.gender, agr.plural)
    be = BE[tense][agr.en]
    cop = lex(f"nahin {aux}", f"{be} not", "0-1 1-0 0-0p") if neg else lex(aux, be)
    return combine({"subj": subj_seg, "time": time, "pred": pred, "cop": cop},
                   "subj time pred cop", "subj cop pred time",
                   [(("pred", pred_head), ("cop", 0), False)])


def destination(np: NP) -> Seg:
    """Bare destination of a motion verb: "ghar" -> "home", "bazaar" -> "to the market"."""
    if np == NP(NOUN["ghar"]):
        return lex("ghar", "home")
    seg, _, _ = np_seg(np, oblique=True)   # "to" has no counterpart: P to the whole NP
    return combine({"np": seg, "to": Seg((), ("to",), ())}, "to np", "to np",
                   [(("np", i), ("to", 0), False) for i in range(len(seg.src))])


# Built by the grammar functions; `sample_clause(rng, "motion")` draws it about once in 3000.
RUNNING_EXAMPLE = to_example(
    clause((PRONOUN["mai"], "m"), VERB["motion", "ja"], "prog", dest=destination(NP(NOUN["ghar"]))))

# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def _table(weights: Mapping) -> tuple[list, list[float]]:
    """(keys, cumulative weights) for `_pick`."""
    return list(weights), list(itertools.accumulate(weights.values()))


FRAME_WEIGHTS = {"motion": 0.17, "intr": 0.14, "obj": 0.3, "ko": 0.09, "se": 0.07, "ditr": 0.08,
                 "copula": 0.15}
TENSE_WEIGHTS = {"prog": 0.3, "pprog": 0.1, "hab": 0.2, "fut": 0.2, "past": 0.2}
P_NEG = 0.15
# Number of clauses per sentence: the train/valid distribution, and the numbers of clauses
# the length-stratified test split tries for each length bucket.
CLAUSES_TRAIN = {1: 0.34, 2: 0.26, 3: 0.15, 4: 0.1, 5: 0.06, 6: 0.05, 7: 0.03, 8: 0.01}
BUCKET_CLAUSES = {"1-10": (1, 2), "11-20": (2, 3), "21-30": (3, 4), "31-40": (4, 5, 6),
                  "41+": (6, 7, 8)}
CONNECTIVE_WEIGHTS = {"aur": 0.25, "lekin": 0.14, "ya": 0.05, "isliye": 0.06, "kyonki": 0.15,
                      "agar": 0.11, "jab": 0.11, "ki": 0.13}
_FRAMES, _CONNECTIVES = _table(FRAME_WEIGHTS), _table(CONNECTIVE_WEIGHTS)
_BY_FRAME = {f: [v for v in VERBS if v.frame == f] for f in [*FRAME_WEIGHTS, "say"]}


def _pick(rng: random.Random, table: tuple[list, list[float]]):
    keys, cum = table
    return keys[bisect.bisect(cum, rng.random() * cum[-1])]


@functools.cache
def _tense_table(verb: Verb) -> tuple[list, list[float]]:
    return _table({t: TENSE_WEIGHTS[t] for t in verb.tenses})


def sample_np(rng: random.Random, kinds: str, plural: bool = True, p_adj: float = 0.25) -> NP:
    noun = rng.choice(nouns(kinds))
    if noun.proper:
        return NP(noun)
    r, det, owner = rng.random(), None, None
    if r < 0.1 and noun.count:
        det = DETS["ek"]
    elif r < 0.17:
        det = DETS["yah"]
    elif r < 0.24:
        det = DETS["vah"]
    elif r < 0.36:
        det = rng.choice(POSS_DETS)
    elif r < 0.46 and plural and noun.count:
        det = rng.choice(NUM_DETS)
    elif r < 0.52:
        owner = rng.choice(nouns("name") + nouns("person") * 2)
    adjs = adjectives(noun.kind)
    adj = rng.choice(adjs) if adjs and rng.random() < p_adj else None
    return NP(noun, det, adj, owner)


def sample_subject(rng: random.Random, allow_vah: bool = True, kinds: str = ANIMATE) -> Subject:
    r = rng.random()
    if r < 0.4:
        p = rng.choice(PRONOUNS if allow_vah else ERG_PRONOUNS)
        return p, rng.choice(p.genders)
    return sample_np(rng, "name" if r < 0.7 else kinds)


def sample_person(rng: random.Random, post: str, prep: str, form: str = "") -> Seg:
    """A person with a postposition: "ram ke saath" -> "with ram", "mere liye" -> "for me"."""
    if rng.random() < 0.25:
        p = rng.choice(OBJ_PRONOUNS)
        if form:   # one-word object forms: mujhe / mujhse
            word = getattr(p, form)
            return lex(word, f"{prep} {p.en_obj}" if prep else p.en_obj)
        return pronoun_with(p, post, prep)
    np = sample_np(rng, "name person animal" if form else "name person", plural=True)
    if prep:   # ko -> to, se -> to; ke saath -> with ("ke" possible)
        return np_with(np, lex(post, prep, "1-0 0-0p" if post.startswith("ke ") else None))
    # object "ko" / "se" without counterpart: P links to the English NP
    return np_with(np, Seg((post,), (), ()), unmatched=0)


def sample_locative(rng: random.Random) -> tuple[Seg, int]:
    """"mez par" -> "on the table"; returns (seg, source index of the noun)."""
    post, kinds = rng.choice(LOCATIVES)
    seg = np_with(sample_np(rng, kinds, plural=False), post)
    return seg, len(seg.src) - len(post.src) - 1


def sample_copula(rng: random.Random, neg: bool) -> Seg:
    subj = sample_subject(rng, allow_vah=False, kinds=f"{ANIMATE} {THINGS} food place")
    tense = "cop_pres" if rng.random() < 0.7 else "cop_past"
    time = rng.choice(TIMES[tense]) if rng.random() < 0.2 else None
    adjs = adjectives(subj.noun.kind if isinstance(subj, NP) else "person")
    if adjs and rng.random() < 0.6:
        adj, agr = rng.choice(adjs), subject_agr(subj)
        pred, head = lex(adj.form(agr.gender, agr.plural), adj.en), 0
    else:
        pred, head = sample_locative(rng)
    return copula(subj, pred, tense, neg, time, head)


def sample_clause(rng: random.Random, frame: str | None = None) -> Seg:
    """One clause of the grammar (frame sampled unless given)."""
    frame = frame or _pick(rng, _FRAMES)
    neg = rng.random() < P_NEG
    if frame == "copula":
        return sample_copula(rng, neg)
    verb = rng.choice(_BY_FRAME[frame])
    tense = _pick(rng, _tense_table(verb))
    ergative = tense == "past" and verb.erg
    subj = sample_subject(rng, allow_vah=not ergative)
    parts: dict[str, Seg | None] = {}
    obj_agr = None
    if rng.random() < 0.3:
        parts["time"] = rng.choice(TIMES[tense])
    if frame != "say" and rng.random() < 0.12:
        parts["comit"] = sample_person(rng, "ke saath", "with")
    if frame in ("intr", "obj", "ko", "se") and rng.random() < 0.25:
        parts["loc"] = sample_locative(rng)[0]
    if frame in ("intr", "obj") and rng.random() < 0.15:
        parts["manner"] = rng.choice(MANNERS)
    if frame == "motion":
        if verb.hi in ("aa", "laut") and rng.random() < 0.3:
            parts["from_"] = np_with(sample_np(rng, "place city", plural=False), lex("se", "from"))
        r = rng.random()
        if r < 0.25:   # "home", the most frequent destination
            parts["dest"] = destination(NP(NOUN["ghar"]))
        elif r < 0.85:
            parts["dest"] = destination(sample_np(rng, "place city", plural=False, p_adj=0.15))
    elif frame in ("obj", "ditr"):
        np = sample_np(rng, verb.objects)
        parts["obj"] = np_seg(np, oblique=False)[0]
        obj_agr = Agr("pl" if np.plural else "3", np.noun.gender)
        if frame == "obj" and rng.random() < 0.1:
            parts["for_"] = sample_person(rng, "ke liye", "for")
        if frame == "ditr":
            parts["io"] = sample_person(rng, "ko", "to", form="ko")
    elif frame == "ko":
        parts["obj"] = sample_person(rng, "ko", "", form="ko")
    elif frame == "se":
        parts["obj"] = sample_person(rng, "se", verb.prep, form="se")
    return clause(subj, verb, tense, neg, obj_agr, **parts)


def sample_sentence(rng: random.Random, n_clauses: int) -> list[Seg]:
    """`n_clauses` clauses joined by conjunctions and subordinate clauses.

    Returns the pieces in sentence order, which is the same on both sides (see `concat`).
    """
    if n_clauses == 1:
        return [sample_clause(rng)]
    conn = _pick(rng, _CONNECTIVES)
    if conn in CONJUNCTIONS:   # A aur B -> A and B
        k = rng.randint(1, n_clauses - 1)
        return [*sample_sentence(rng, k), lex(conn, CONJUNCTIONS[conn]),
                *sample_sentence(rng, n_clauses - k)]
    if conn == "agar":         # agar A to B -> if A then B
        first = [lex("agar", "if"), sample_clause(rng), lex("to", "then")]
    elif conn == "jab":        # jab A tab B -> when A B  ("tab" possible-linked to "when")
        first = [combine({"when": lex("jab", "when"), "a": sample_clause(rng),
                          "tab": Seg(("tab",), (), ())}, "when a tab", "when a tab",
                         [(("tab", 0), ("when", 0), False)])]
    else:                      # X kehta hai ki B -> X says that B
        first = [sample_clause(rng, "say"), lex("ki", "that")]
    return first + sample_sentence(rng, n_clauses - 1)


def concat(pieces: Sequence[Seg]) -> Seg:
    """Pieces in the same order on both sides."""
    src: list[str] = []
    tgt: list[str] = []
    links: list[tuple[int, int, bool]] = []
    for p in pieces:
        di, dj = len(src), len(tgt)
        links += [(i + di, j + dj, s) for i, j, s in p.links]
        src += p.src
        tgt += p.tgt
    return Seg(tuple(src), tuple(tgt), tuple(links))


_CLAUSES_TRAIN = _table(CLAUSES_TRAIN)


def sample_example(rng: random.Random, n_clauses: int | None = None) -> Example:
    """One sentence pair (train distribution unless `n_clauses` is given).

    Sentences outside MIN_SRC_LEN..MAX_SRC_LEN source words are redrawn.
    """
    while True:
        n = n_clauses or _pick(rng, _CLAUSES_TRAIN)
        seg = concat(sample_sentence(rng, n))
        if MIN_SRC_LEN <= len(seg.src) <= MAX_SRC_LEN:
            return to_example(seg)


def _fill(rng: random.Random, size: int, seen: set[str], stratified: bool,
          given: Sequence[Example] = ()) -> list[Example]:
    """`given` followed by `size - len(given)` new examples whose sources are not in `seen`
    (which is updated).

    stratified: an equal quota per length bucket (the `given` examples count against theirs);
    each draw targets a bucket with quota left through the number of clauses (BUCKET_CLAUSES)
    and is kept if its bucket has room.
    """
    quota = {b: size // len(LENGTH_BUCKETS) + (i < size % len(LENGTH_BUCKETS))
             for i, b in enumerate(LENGTH_BUCKETS)}
    out: list[Example] = list(given)
    if stratified:
        for ex in given:
            quota[length_bucket(len(ex.src.split()))] -= 1
    for _ in range(100 * size + 1000):
        if len(out) == size:
            return out
        if stratified:
            open_buckets = [b for b in LENGTH_BUCKETS if quota[b]]
            ex = sample_example(rng, rng.choice(BUCKET_CLAUSES[rng.choice(open_buckets)]))
        else:
            ex = sample_example(rng)
        if ex.src in seen:
            continue
        if stratified:
            bucket = length_bucket(len(ex.src.split()))
            if not quota[bucket]:
                continue
            quota[bucket] -= 1
        seen.add(ex.src)
        out.append(ex)
    raise RuntimeError(f"could not draw {size} distinct examples")


def generate_splits(sizes: Mapping[str, int], seed: int) -> dict[str, list[Example]]:
    """Splits 'train', 'valid', 'test', deterministic in (sizes, seed), disjoint by source.

    test: stratified, equal share per length bucket; valid, train: the train distribution.
    The running example is held out: no split draws its source, and a non-empty test split
    holds it as example 0 (counted in the 1-10 bucket's share). Splits are drawn test first,
    then valid, then train, so a split depends only on its own and the earlier splits' sizes.
    """
    seen: set[str] = {RUNNING_EXAMPLE.src}
    out = {}
    for split in ("test", "valid", "train"):
        rng = random.Random(f"attn_jax.synthetic/{seed}/{split}")
        size = sizes.get(split, 0)
        given = [RUNNING_EXAMPLE] if split == "test" and size > 0 else []
        out[split] = _fill(rng, size, seen, stratified=split == "test", given=given)
    return {k: out[k] for k in ("train", "valid", "test")}
