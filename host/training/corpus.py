"""A deterministic generator of short children's stories, the training corpus of the default model.

The stories imitate the TinyStories data set in a small, regular language that a
model of a quarter of a million parameters can learn. They come from a little
grammar rather than one template: a story is an opening, a cast (a child or an
animal, friends, brothers and sisters, pets, family), and one of ten arcs (lost
and found, helping a friend, being brave, a trip, sharing, a gift, rain, a
mistake, the dark, a rescued animal). Every beat of an arc has several
realisations, each sentence has alternatives written inline as ``[a|b|c]``
(nestable), and ``{h.his}``-style slots fill in names, pronouns, things and
places so that they agree within the story.

Everything is chosen by one ``random.Random``, only ever from sequences, so a
seed gives byte-identical text on every Python from 3.10 on.
"""

import hashlib
import random
import re
from dataclasses import dataclass, replace

STORY_SEPARATOR = "<|endoftext|>"
"""Joins stories in the training token stream; never part of a story's text."""

OPENINGS = ("Once upon a time", "One day,", "One sunny morning,", "Once there was", "There once was", "Long ago,")
"""Every story starts with one of these; the first is the most common."""

MIN_WORDS = 110
MAX_WORDS = 220
VALID_EVERY = 50
"""About one distinct story in this many goes to validation (chosen by a hash of its text)."""

GIRL_NAMES = ("Lily", "Sue", "Mia", "Anna", "Emma", "Lucy", "Sara", "Amy", "Zoe", "Kate", "Ella", "Rose",
              "Jane", "Molly", "Ruby", "Nina", "Lola", "Kim")
BOY_NAMES = ("Tom", "Ben", "Sam", "Tim", "Jack", "Leo", "Jake", "Bob", "Joe", "Finn", "Timmy", "Billy",
             "Jim", "Dan", "Luke", "Ned")
HE_PET_NAMES = ("Max", "Spot", "Buddy", "Rex", "Toby", "Sparky")
SHE_PET_NAMES = ("Bella", "Coco", "Lulu", "Penny", "Mimi", "Daisy")


# --- The template language -------------------------------------------------------------------

_MACROS = (
    ("<then>", "[|Then|Then,|Soon|After a while,|A little later,]"),
    ("<suddenly>", "[Suddenly,|All of a sudden,]"),
    ("<very>", "[very |so |really |]"),
)
_CAPITAL = re.compile(r'(^"?|[.!?] "?)([a-z])')
_SPEECH_VERBS = {".": ("said",), "!": ("said", "said", "shouted"), "?": ("asked",)}
_parsed: dict[str, list] = {}


def _parse(text: str, start: int = 0, nested: bool = False) -> tuple[list, int]:
    """Parse '[a|b]' alternatives into a list of strings and lists of alternative sequences."""
    sequence, alternatives, literal, i = [], [], start, start
    while i < len(text):
        char = text[i]
        if char == "[":
            if literal < i:
                sequence.append(text[literal:i])
            choice, i = _parse(text, i + 1, nested=True)
            sequence.append(choice)
            literal = i
            continue
        if nested and char in "|]":
            if literal < i:
                sequence.append(text[literal:i])
            alternatives.append(sequence)
            sequence, literal = [], i + 1
            if char == "]":
                return alternatives, i + 1
        i += 1
    if literal < i:
        sequence.append(text[literal:])
    return sequence, i


def _with_macros(template: str) -> str:
    for macro, expansion in _MACROS:
        template = template.replace(macro, expansion)
    return template


def _expand(rng: random.Random, sequence: list) -> str:
    return "".join(part if isinstance(part, str) else _expand(rng, rng.choice(part)) for part in sequence)


def _capitalize(text: str) -> str:
    return _CAPITAL.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _article(phrase: str) -> str:
    return "an" if phrase[0] in "aeiou" else "a"


# --- The cast, things and places ---------------------------------------------------------------

@dataclass(frozen=True)
class _Character:
    name: str   # in narration: "Lily", "Max", "her mom"
    call: str   # when spoken to: "Lily", "Mom"
    noun: str   # "girl", "dog", "mom"
    rel: str    # what they are to the hero: "friend", "little brother", "dog", "mom"
    ref: str    # first mention beside the hero: "her friend Tom", "her dog Max", "her mom"
    intro: str  # "a little girl named Lily"
    home: str   # "with her mom and dad in a little house by the sea"
    he: str
    him: str
    his: str
    self: str
    human: bool


_SHE = ("she", "her", "her", "herself")
_HE = ("he", "him", "his", "himself")

# species: where one lives, when it is the hero
_SPECIES = (
    ("dog", "in a little house with a big yard"),
    ("cat", "in a cozy house by the park"),
    ("bunny", "in a hole under a big tree"),
    ("bear", "in a big cave in the forest"),
    ("puppy", "in a little house with a big yard"),
    ("kitten", "in a cozy house by the park"),
    ("mouse", "in a tiny hole in the wall"),
    ("duck", "by a big pond"),
)
_KID_ADJECTIVES = ("little", "little", "small", "kind", "happy", "brave", "shy", "curious", "sweet")
_ANIMAL_ADJECTIVES = ("little", "little", "small", "fluffy", "happy", "brave", "shy", "curious", "friendly")
_HUMAN_HOMES = ("[small|little|cozy] house [near the woods|by the sea|with a big garden|with a red door]",
                "[small|little|cozy] house [in a quiet town|at the end of the street]")
_LIKES = ("play outside", "play with {h.his} toys", "sing songs", "draw pictures", "read books", "run and jump",
          "look at the clouds", "help {h.his} mom", "dance", "play games with {h.his} friends")
_ANIMAL_LIKES = ("run and jump", "play in the sun", "chase butterflies", "roll in the grass", "take long naps",
                 "play with {h.his} friends", "eat yummy food")


@dataclass(frozen=True)
class _Thing:
    noun: str            # "ball", "crayons"
    name: str            # with an adjective: "red ball"
    plural: bool
    kind: str            # "toy" or "thing"
    play: tuple = ()     # what a child does with it, as templates
    tags: tuple = ()     # what can happen to it: "lose", "high", "share", "break"

    @property
    def the(self) -> str:
        return "the " + self.noun

    @property
    def a(self) -> str:
        return ("some " if self.plural else _article(self.name) + " ") + self.name

    @property
    def it(self) -> str:
        return "them" if self.plural else "it"

    @property
    def they(self) -> str:
        return "they" if self.plural else "it"

    @property
    def its(self) -> str:
        return "their" if self.plural else "its"

    @property
    def be(self) -> str:
        return "are" if self.plural else "is"

    @property
    def was(self) -> str:
        return "were" if self.plural else "was"

    @property
    def this(self) -> str:
        return "these" if self.plural else "this"

    @property
    def s(self) -> str:
        return "s" if self.plural else ""


# noun, plural, kind, adjectives, how one plays with it, what can happen to it
_THINGS = (
    ("ball", False, "toy", ("red", "blue", "big", "bouncy", "yellow", "orange"),
     ("kick {o.it} [across the grass|high in the air]", "throw {o.it} up high", "bounce {o.it}"),
     ("lose", "high", "share")),
    ("kite", False, "toy", ("red", "big", "blue", "green", "pretty"),
     ("fly {o.it} high in the sky", "run with {o.it} in the wind"), ("high", "share", "break")),
    ("teddy bear", False, "toy", ("soft", "brown", "old", "little"),
     ("hug {o.it} tight", "take {o.it} everywhere"), ("lose", "share")),
    ("doll", False, "toy", ("pretty", "little", "old", "new"),
     ("brush {o.its} hair", "take {o.it} everywhere", "dress {o.it} up"), ("lose", "share", "break")),
    ("toy car", False, "toy", ("red", "fast", "little", "shiny"),
     ("push {o.it} around", "make {o.it} go fast"), ("lose", "share", "break")),
    ("toy boat", False, "toy", ("blue", "little", "red", "wooden"),
     ("play with {o.it} in the bath",), ("share", "break")),
    ("hat", False, "thing", ("red", "big", "yellow", "new", "orange"),
     ("wear {o.it} every day", "wear {o.it} in the sun"), ("lose", "high")),
    ("blocks", True, "toy", ("colorful", "wooden", "big"),
     ("build tall towers with {o.it}",), ("share",)),
    ("crayons", True, "thing", ("new", "colorful", "bright"),
     ("draw pictures with {o.it}",), ("lose", "share")),
    ("balloon", False, "thing", ("red", "big", "yellow", "shiny", "pink"),
     ("hold {o.it} by {o.its} string",), ("high",)),
    ("toy train", False, "toy", ("blue", "red", "little", "wooden"),
     ("push {o.it} around the room",), ("lose", "share", "break")),
    ("drum", False, "toy", ("little", "red", "new"),
     ("play {o.it} very loud",), ("share", "break")),
    ("marbles", True, "toy", ("shiny", "little", "blue"),
     ("roll {o.it} on the floor",), ("lose", "share")),
    ("book", False, "thing", ("new", "big", "old"),
     ("look at the pictures in {o.it}",), ("lose",)),
)


@dataclass(frozen=True)
class _Place:
    key: str
    the: str        # "the park"
    at: str         # "at the park"
    to: str         # "to the park"
    look: str       # a first impression, as a sentence
    spots: tuple    # where a lost thing can be
    fun: tuple      # what visitors did there, in the past tense
    finds: tuple    # something small and nice to find there
    critter: str    # an animal one meets there, as a sentence


_PLACES = (
    _Place("park", "the park", "in the park", "to the park", "The park was big and green.",
           ("under the slide", "behind a big tree", "near the swings", "in the tall grass", "under a bench",
            "in the sandbox"),
           ("played on the swings", "went down the big slide", "fed the ducks", "ran on the soft grass",
            "played in the sandbox"),
           ("a shiny stone", "a pretty leaf", "a big feather"),
           "A duck came [over|close] and said, \"Quack!\""),
    _Place("garden", "the garden", "in the garden", "to the garden", "The garden was full of flowers.",
           ("behind the bushes", "under a big leaf", "near the flowers", "by the fence", "under the apple tree"),
           ("smelled the flowers", "watered the plants", "picked red apples", "watched the bees and the butterflies"),
           ("a shiny stone", "a pretty leaf", "a red flower"),
           "A little bird sat on the fence and sang a song."),
    _Place("forest", "the forest", "in the forest", "to the forest", "The trees in the forest were so tall.",
           ("under a big log", "behind a tree", "in a pile of leaves", "near a big rock", "under a bush"),
           ("walked on a little path", "heard the birds sing", "picked some berries", "jumped over a log",
            "looked for bugs under the rocks"),
           ("a pretty leaf", "a big feather", "a little pine cone"),
           "A squirrel ran up a tree with a nut in its mouth."),
    _Place("beach", "the beach", "at the beach", "to the beach", "The sea was blue, and the sand was warm.",
           ("behind a big rock", "in the sand", "near the water", "under a towel"),
           ("built a sandcastle", "looked for shells", "played in the waves", "dug a big hole in the sand",
            "watched the boats"),
           ("a pretty shell", "a shiny stone", "a pink shell"),
           "A little crab walked across the sand, and {h.name} laughed."),
    _Place("house", "the house", "at home", "home", "",
           ("under the bed", "behind the couch", "in the toy box", "under the table", "in the kitchen"),
           (), (), ""),
    _Place("school", "the school", "at school", "to school", "",
           ("under a desk", "by the door", "in the yard", "near the big window"),
           (), (), ""),
    _Place("farm", "the farm", "on the farm", "to the farm", "There were animals everywhere on the farm.",
           ("behind the barn", "in the hay", "near the fence", "by the big red barn"),
           ("saw the cows and the pigs", "fed the hens", "rode a little pony", "patted a baby lamb",
            "played in the hay"),
           ("a big feather", "a brown egg", "a shiny stone"),
           "A big cow looked at {h.name} and said, \"Moo!\""),
    _Place("pond", "the pond", "by the pond", "to the pond", "The water in the pond was calm and blue.",
           ("in the tall grass", "under a rock", "near the water", "behind a big tree"),
           ("watched the frogs jump", "fed the ducks", "threw little stones in the water", "looked at the fish"),
           ("a shiny stone", "a smooth rock", "a big feather"),
           "A green frog jumped into the water. Splash!"),
)
_OUTDOORS = ("park", "garden", "forest", "beach", "farm", "pond")
_TREES = ("park", "garden", "forest", "farm")

# a small animal met in a story: name, how it moves away
_CRITTERS = (("bird", "flew"), ("squirrel", "ran"), ("frog", "hopped"), ("bunny", "hopped"), ("duck", "walked"))

_STYLES = ("Once upon a time",) * 9 + ("One day,",) * 3 + ("One sunny morning,",) * 2 + \
          ("Once there was",) * 2 + ("There once was",) * 2 + ("Long ago,",) * 2
_INTROS = {
    "Once upon a time": ("Once upon a time, there was {h.intro}.", "Once upon a time, there lived {h.intro}.",
                         "Once upon a time, in a [small town|little village|land far away], there lived {h.intro}."),
    "Once there was": ("Once there was {h.intro}.", "Once there was {h.intro} who loved to {like1}."),
    "There once was": ("There once was {h.intro}.", "There once was {h.intro} who loved to {like1}."),
    "Long ago,": ("Long ago, in a [small village|little town|land far away], there lived {h.intro}.",
                  "Long ago, there was {h.intro}."),
}
_DESCRIPTIONS = ("{h.he} [loved|liked] to {like2}.", "{h.he} lived {h.home}.",
                 "{h.he} was a [playful|good|clever|helpful] {h.noun}[ with a big smile|].")


class _Story:
    """One story being told: its random source, the slots its templates fill, and its sentences."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.slots: dict = {}
        self.paragraphs: list[list[str]] = [[]]
        self.hero = self.slots["h"] = self._hero()

    # choosing

    def pick(self, options):
        return self.rng.choice(options)

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def fill(self, template: str) -> str:
        tree = _parsed.get(template)
        if tree is None:
            tree = _parsed[template] = _parse(_with_macros(template))[0]
        return _expand(self.rng, tree).format_map(self.slots).lstrip()

    # telling

    def tell(self, *templates: str) -> None:
        """Add one sentence (or a few), from one of the templates."""
        self.paragraphs[-1].append(_capitalize(self.fill(self.pick(templates))))

    def maybe(self, p: float, *templates: str) -> None:
        if self.chance(p):
            self.tell(*templates)

    def say(self, who: _Character, *lines: str, verbs: tuple = (), pronoun: bool = False) -> None:
        """Add a line of dialogue, framed as 'X said, "..."', '"...," said X.' or '"...," she said.'."""
        line = _capitalize(self.fill(self.pick(lines)))
        mark = line[-1]
        if not verbs and mark == "?" and re.search(r"[.!] ", line):
            verbs = ("said",)  # a statement and then a question: '"Stop. Why not share?" said Mom.'
        verb = self.pick(verbs or _SPEECH_VERBS[mark])
        by_pronoun = pronoun and self.chance(0.5)
        speaker = who.he if by_pronoun else who.name
        if self.chance(0.4):
            sentence = f'{speaker} {verb}, "{line}"'
        else:
            if mark == ".":
                line = line[:-1] + ","
            if by_pronoun or mark == "." and self.chance(0.3):
                sentence = f'"{line}" {speaker} {verb}.'
            else:
                sentence = f'"{line}" {verb} {speaker}.'
        self.paragraphs[-1].append(_capitalize(sentence))

    def exchange(self, first: _Character, second: _Character, *pairs: tuple[str, str]) -> None:
        """Two lines of dialogue, a line and its answer, from one of the pairs."""
        line, answer = self.pick(pairs)
        self.say(first, line)
        self.say(second, answer)

    def paragraph(self) -> None:
        if self.paragraphs[-1]:
            self.paragraphs.append([])

    def text(self) -> str:
        return "\n".join(" ".join(sentences) for sentences in self.paragraphs if sentences)

    # the cast

    def _hero(self) -> _Character:
        if self.chance(0.8):
            return self.child(self.pick(("girl", "boy")), self.pick(_KID_ADJECTIVES))
        return self.animal(self.pick(_SPECIES)[0], self.pick(_ANIMAL_ADJECTIVES))

    def _hero_name(self) -> str:
        return self.slots["h"].name if "h" in self.slots else ""

    def child(self, noun: str, adjective: str = "little", rel: str = "friend") -> _Character:
        names = GIRL_NAMES if noun in ("girl", "sister") else BOY_NAMES
        name = self.pick([n for n in names if n != self._hero_name()])
        he, him, his, self_ = _SHE if names is GIRL_NAMES else _HE
        owner = self.slots["h"].his + " " if "h" in self.slots else ""
        home = "with " + his + " mom and dad in a " + self.fill(self.pick(_HUMAN_HOMES))
        intro = f"{_article(adjective)} {adjective} {noun} named {name}"
        return _Character(name, name, noun, rel, f"{owner}{rel} {name}", intro, home, he, him, his, self_, True)

    def animal(self, species: str, adjective: str = "little", rel: str = "friend") -> _Character:
        she = self.chance(0.5)
        names = SHE_PET_NAMES if she else HE_PET_NAMES
        name = self.pick([n for n in names if n != self._hero_name()])
        he, him, his, self_ = _SHE if she else _HE
        owner = self.slots["h"].his + " " if "h" in self.slots else ""
        intro = f"{_article(adjective)} {adjective} {species} named {name}"
        return _Character(name, name, species, rel, f"{owner}{rel} {name}", intro, dict(_SPECIES)[species],
                          he, him, his, self_, False)

    def friend(self, siblings: bool = True) -> _Character:
        """A friend of the hero (or a brother or sister), of the hero's kind; stored as slot f."""
        if not self.hero.human:
            friend = self.animal(self.pick([s for s, _ in _SPECIES if s != self.hero.noun]))
        elif siblings and self.chance(0.3):
            rel = self.pick(("little brother", "big brother", "little sister", "big sister"))
            friend = self.child(rel.split()[1], rel=rel)
        else:
            friend = self.child(self.pick(("girl", "boy")))
        self.slots["f"] = friend
        return friend

    def pet(self, species: tuple) -> _Character:
        """The hero's pet, stored as slot f."""
        kind = self.pick(species)
        pet = self.slots["f"] = self.animal(kind, rel=kind)
        return pet

    def family(self, slot: str = "p", members: tuple = ("mom", "dad", "grandma", "grandpa")) -> _Character:
        """A mom, dad, grandma or grandpa of the hero, stored as slot p (or another)."""
        if not self.hero.human:
            members = tuple(m for m in members if m in ("mom", "dad")) or ("mom",)
        member = self.pick(members)
        he, him, his, self_ = _SHE if member in ("mom", "grandma") else _HE
        name = self.hero.his + " " + member
        person = self.slots[slot] = _Character(name, member.capitalize(), member, member, name, name, "",
                                               he, him, his, self_, True)
        return person

    def thing(self, tag: str) -> _Thing:
        """A thing that can be lost, get stuck high up, be shared or break (the tag); stored as slot o."""
        noun, plural, kind, adjectives, play, tags = self.pick([t for t in _THINGS if tag in t[5]])
        thing = self.slots["o"] = _Thing(noun, self.pick(adjectives) + " " + noun, plural, kind, play, tags)
        return thing

    def place(self, keys: tuple) -> _Place:
        if not self.hero.human:
            keys = tuple(k for k in keys if k in _OUTDOORS) or _OUTDOORS
        place = self.slots["pl"] = self.pick([p for p in _PLACES if p.key in keys])
        return place

    def critter(self) -> None:
        """A small animal that happens to be there, stored as slot a, with how it moves as slot move."""
        self.slots["a"], self.slots["move"] = self.pick(_CRITTERS)

    # the opening

    def open(self, scene: str, night: bool = False, morning: bool = False) -> None:
        """Start the story in one of the typical ways and set the first scene (a verb phrase for the hero)."""
        likes = _LIKES if self.hero.human else _ANIMAL_LIKES
        self.slots["like1"], self.slots["like2"] = (self.fill(like) for like in self.rng.sample(likes, 2))
        style = self.pick(_STYLES)
        if night and style in ("One day,", "One sunny morning,"):
            style = "Once upon a time"
        if not night and (style in ("One day,", "One sunny morning,") or
                          style == "Once upon a time" and self.chance(0.3)):
            self.tell(style.rstrip(",") + ", {h.intro} " + scene + ".")
            return
        self.tell(*_INTROS[style])
        for description in self.rng.sample(_DESCRIPTIONS, self.pick((0, 1, 1, 2))):
            self.tell(description)
        when = "One night, " if night else "[One day|One morning|One sunny day], " if morning else \
            "[One day|One morning|One sunny day|One afternoon], "
        self.tell(when + "[{h.name}|{h.he}] " + scene + ".")


# --- The arcs --------------------------------------------------------------------------------------
# Each arc tells a whole story into a _Story. Slots: h hero, f friend or pet, p family, o thing, pl place,
# a small animal (with its move), and a few arc-specific ones.

def _lost_and_found(s: _Story) -> None:
    """A favourite thing is lost, looked for, and found with some help."""
    s.thing("lose")
    place = s.place(("park", "garden", "forest", "beach", "house", "school", "farm", "pond"))
    s.slots["s1"], s.slots["s2"], s.slots["s3"] = s.rng.sample(place.spots, 3)
    s.slots["play"] = s.fill(s.pick(s.slots["o"].play))
    at_home = place.key == "house"
    s.slots["later"] = "When it was time for bed" if at_home else "When it was time to go home"
    s.open("was playing with {h.his} {o.name} {pl.at}" if at_home else
           "[was playing with {h.his} {o.name} {pl.at}|took {h.his} {o.name} {pl.to}|"
           "went {pl.to} with {h.his} {o.name}]")
    s.maybe(0.7, "{h.he} loved {h.his} {o.noun} very much.", "{o.they} {o.was} {h.his} favorite {o.kind}{o.s}.",
            "{h.he} liked to {play}.", "{h.he} got {o.it} from {h.his} grandma[ for {h.his} birthday|].")
    if s.chance(0.7):
        s.tell("<then> {h.name} put {o.the} down and [ran off to play|went to look at a pretty butterfly|"
               "went to get a drink of water|sat down to rest for a bit].")
        s.tell("When {h.he} looked for {o.it} again, {o.they} {o.was} gone!",
               "A little later, {h.he} wanted to play with {o.it} again, but {o.they} {o.was} gone!",
               "But when {h.he} turned around, {o.the} {o.was} not there!")
    else:
        s.tell("{later}, {h.name} could not find {h.his} {o.noun}.",
               "[After a while,|A little later,|Later,] {h.name} saw that {h.his} {o.noun} {o.was} gone!")
    s.maybe(0.5, "{h.name} was <very>sad.", "{h.name} felt <very>sad and wanted to cry.",
            "Tears came to {h.name}'s eyes.")
    s.say(s.hero, "Oh no! Where {o.be} my {o.noun}?", "Where did my {o.noun} go?", "Oh no! My {o.noun} {o.be} gone!",
          verbs=("said", "cried"), pronoun=True)
    s.tell("{h.he} looked {s1} and {s2}, but {o.they} {o.was} not there.",
           "{h.he} looked {s1}. {h.he} looked {s2}. But {h.he} could not find {o.it}.",
           "{h.he} looked everywhere, but {h.he} could not find {o.it}[ anywhere|].")

    helpers = ("friend", "family", "pet") if s.hero.human and place.key != "school" else ("friend",)
    helper = s.pick(helpers if place.key in ("house", "school") else helpers + ("critter",))
    if helper == "friend":
        friend = s.friend()
        s.tell("Just then, {f.ref} [came by|walked by|came to play].", "<then> {h.name} saw {f.ref}.")
        s.say(friend, "What's wrong, {h.call}?", "Why are you sad, {h.call}?", "Are you okay, {h.call}?")
        s.say(s.hero, "I lost my {o.noun}!", "I can't find my {o.noun}.",
              "My {o.noun} {o.be} gone, and I can't find {o.it} anywhere.")
        s.say(friend, "Don't be sad. I will help you look!", "Let's look for {o.it} together!",
              "I will help you find {o.it}!")
        s.tell("So {h.name} and {f.name} looked [together|all around {pl.the}].", "They looked and looked.")
        if s.chance(0.3):
            s.tell("{f.name} had an idea. \"Let's look {s3}!\" {f.he} said.")
            s.tell("They looked {s3}, and there {o.they} {o.was}!")
        else:
            s.tell("<then> {f.name} [saw|found] something {s3}.", "At last, {f.name} looked {s3}.")
            s.say(friend, "Look! I found {o.it}!", "Look, {h.call}! {o.be} {o.this} your {o.noun}?",
                  "Here {o.they} {o.be}!")
    elif helper == "family":
        s.family()
        s.tell("{h.name} ran to {p.name} and told {p.him} what happened.", "{h.name} went to find {p.name}.")
        s.say(s.hero, "{p.call}, I lost my {o.noun}!", "{p.call}, I can't find my {o.noun}!", verbs=("said", "cried"))
        s.say(s.slots["p"], "Don't worry, we will find {o.it}.", "It's okay. Let's look together.",
              "Don't be sad. Two can look better than one.")
        s.tell("They looked {s3}, and there {o.they} {o.was}!",
               "{p.name} [helped {h.him} look|looked with {h.him}]. At last, they found {o.the} {s3}.")
    elif helper == "pet":
        s.pet(("dog", "puppy"))
        s.tell("<suddenly> {h.name} heard a [happy|loud] bark. It was {f.ref}!")
        s.tell("{f.name} [ran up to {h.him}|came running] with {o.the} in {f.his} mouth.",
               "{f.name} had found {o.the} {s3}, and now {f.he} brought {o.it} to {h.name}.")
        s.say(s.hero, "{f.name}, you found {o.it}!", "Good {f.noun}, {f.name}!")
        s.tell("{f.name} wagged {f.his} tail.")
    else:
        s.critter()
        s.tell("<suddenly> {h.name} saw a little {a} {s3}.")
        s.tell("The {a} was [sitting next to|looking at] {h.his} {o.noun}!",
               "Next to the {a} {o.was} {h.his} {o.noun}!")
        s.tell("The {a} {move} away, and {h.name} ran to get {o.the}.")
    s.tell("{h.name} was so happy!", "{h.name} jumped up and down.", "{h.name} smiled a big smile.")
    s.maybe(0.6, "{h.he} [picked {o.it} up|held {o.it} tight] and laughed.")
    if helper == "friend":
        s.say(s.hero, "Thank you, {f.call}!", "Thank you for helping me, {f.call}!",
              "You are a good friend, {f.call}!" if s.slots["f"].rel == "friend" else "You are the best, {f.call}!")
    elif helper == "family":
        s.say(s.hero, "Thank you, {p.call}!")
        s.maybe(0.5, "{h.he} gave {p.name} a big hug.")
    s.paragraph()
    if helper == "friend":
        s.tell("Then {h.name} and {f.name} played with {o.the} [until the sun went down|all afternoon|"
               "for the rest of the day].")
    else:
        s.tell("That night, {h.name} went to bed with {o.the} right next to {h.him}." if at_home else
               "{h.name} went home with a big smile.")
    s.maybe(0.6, "From that day on, {h.name} [always kept {o.the} in a safe place|never left {h.his} {o.noun} behind|"
                 "took good care of {h.his} {o.noun}].",
            "{h.name} learned to take good care of {h.his} things.")


_HELP_PROBLEMS = ("stuck", "hurt", "broken", "alone", "reach")


def _helping(s: _Story) -> None:
    """A friend has a problem, and the hero helps."""
    problem = s.pick(_HELP_PROBLEMS if s.hero.human else ("stuck", "hurt", "alone"))
    if problem == "alone":
        _new_friend(s)
        return
    s.place(_TREES if problem in ("stuck", "reach") else ("park", "garden", "school", "beach"))
    friend = s.friend()
    s.open("[was playing {pl.at} with {f.ref}|went {pl.to} with {f.ref}]")
    if friend.rel == "friend":
        s.maybe(0.5, "{f.name} lived next door.", "{f.name} was {h.his} best friend.",
                "{h.name} and {f.name} were best friends.")
    s.maybe(0.8, "They [liked|loved] to play together.", "They [played|had fun] all morning.",
            "The sun was warm, and the sky was blue.", "They played [tag|hide and seek] and laughed a lot.")
    if problem == "stuck":
        thing = s.thing("high")
        s.slots["play"] = s.fill(s.pick(thing.play))
        s.tell("{f.name} had {o.a}.", "{f.name} had brought {f.his} {o.name}.")
        s.maybe(0.5, "{f.he} liked to {play}.")
        s.tell("<suddenly> a big wind came, and {o.the} flew up into a tall tree.",
               "<then> {o.the} got stuck high up in a tall tree.")
        s.tell("{f.name} looked up and [started to cry|felt very sad].")
        if s.chance(0.5):
            s.say(s.hero, "What's wrong, {f.call}?", "Why are you sad, {f.call}?")
        s.say(friend, "My {o.noun}! I can't reach {o.it}!", "Oh no! My {o.noun} {o.be} stuck!", verbs=("said", "cried"))
        s.say(s.hero, "Don't worry, {f.call}. I will help you!", "Don't cry, {f.call}. We can get {o.it} down!")
        way = s.pick(("stick", "shake", "family") if s.hero.human else ("stick", "shake"))
        if way == "stick":
            s.tell("{h.name} looked around and found a long stick [on the ground|under the tree].")
            s.tell("{h.he} stood on {h.his} toes and [pushed|poked] {o.the} with the stick.")
            s.tell("{h.he} tried again and again, and at last {o.the} fell [down|to the ground]!")
        elif way == "shake":
            s.tell("{h.name} had an idea. \"Let's shake the tree!\" {h.he} said.")
            s.tell("They shook the tree as hard as they could.")
            s.tell("<then> {o.the} came down!", "At last, {o.the} fell down into the grass!")
        else:
            s.family(members=("dad", "grandpa", "mom"))
            s.tell("{h.name} ran to get {p.name}.")
            s.tell("{p.name} was tall, so {p.he} could reach {o.the}.",
                   "{p.name} reached up high and got {o.the} out of the tree.")
        s.tell("{f.name} was so happy!", "{f.name} jumped up and down.")
        s.say(friend, "Thank you, {h.call}! You are the best!", "Thank you so much, {h.call}!", pronoun=True)
        s.paragraph()
        s.tell("They played with {o.the} [all day|until the sun went down], but not near the tall tree.",
               "Then they played together [all day|until it was time to go home].")
    elif problem == "hurt":
        s.tell("<suddenly> {f.name} [fell down|tripped over a rock] and hurt {f.his} knee.")
        s.tell("{f.he} started to cry.", "It hurt a lot, and {f.he} started to cry.")
        s.tell("{h.name} ran to {f.him}.", "{h.name} stopped playing and ran to {f.him}.")
        s.say(s.hero, "Are you okay, {f.call}?", "Oh no! Are you hurt?")
        s.say(friend, "My knee hurts!", "It hurts so much!", verbs=("said", "cried"))
        s.tell("{h.name} helped {f.name} up[ and gave {f.him} a big hug|].")
        if s.hero.human:
            s.family(members=("mom", "dad", "grandma"))
            s.tell("Then {h.name} took {f.name} to {p.name}.", "Then {h.name} went to get {p.name}.")
            s.tell("{p.name} put a [little|small] bandage on {f.name}'s knee.",
                   "{p.name} [washed|cleaned] the knee and put a bandage on it.")
        else:
            s.tell("{h.he} stayed with {f.name} and told {f.him} a funny story.",
                   "{h.he} sat with {f.name} for a while and held {f.his} paw.")
        s.tell("Soon, {f.name} felt better.", "After a while, {f.name} stopped crying and smiled.")
        s.say(friend, "Thank you, {h.call}. You are a good friend." if friend.rel == "friend" else
              "Thank you, {h.call}. You are the best.", "Thank you for helping me, {h.call}!")
        s.paragraph()
        s.tell("Then the two of them played [again|a quiet game] until it was time to go home.",
               "They sat together and [talked|laughed] for a long time.")
    elif problem == "broken":
        s.thing("break")
        s.tell("{f.name} had {o.a}, but {o.they} {o.was} broken.",
               "<then> {f.name}'s {o.noun} fell and broke.")
        s.tell("{f.name} was <very>sad.", "{f.name} looked at {o.the} and started to cry.")
        s.say(friend, "My {o.noun} {o.be} broken! Now I can't play with {o.it}!", "Oh no! My {o.noun}!",
              verbs=("said", "cried"))
        s.say(s.hero, "Don't be sad, {f.call}. Maybe we can fix {o.it}!", "I can help you fix {o.it}!")
        if s.chance(0.5):
            s.tell("{h.name} went to get [some tape|a little bottle of glue].")
            s.tell("{h.he} fixed {o.the} very carefully.", "Very carefully, {h.he} put the pieces back together.")
        else:
            s.family(members=("dad", "grandpa", "mom"))
            s.tell("They took {o.the} to {p.name}.")
            s.tell("{p.name} got some glue, and together they fixed {o.the}.")
        s.tell("Soon, {o.the} {o.was} as good as new!", "{o.the} looked almost as good as new.")
        s.say(friend, "You fixed {o.it}! Thank you, {h.call}!", "Thank you, {h.call}!")
        s.paragraph()
        s.tell("Then they played with {o.the} together [all afternoon|until it was time for dinner].")
    else:
        s.tell("{f.name} saw [red apples|some apples] high up in a tree.",
               "There was an apple tree {pl.at}, and {f.name} wanted an apple.")
        s.tell("{f.he} jumped and jumped, but the apples were too high.")
        s.say(friend, "I can't reach them!", "I'm too small!", verbs=("said", "cried"), pronoun=True)
        s.maybe(0.6, "{h.name} tried too, but {h.he} could not reach them either.",
                "{h.name} looked up at the apples. They were red and round.")
        s.tell("{h.name} [had an idea|thought for a moment].")
        s.tell("{h.he} got a big box and put it under the tree.", "{h.he} found an old box and put it under the tree.")
        s.tell("{f.name} stood on the box and [picked|got] [two|three] red apples.")
        s.say(friend, "Thank you, {h.call}! One is for you!", "We did it! Here, this one is for you!")
        s.paragraph()
        s.tell("They sat under the tree and ate the apples together.", "They sat in the shade and ate their apples.")
        s.maybe(0.7, "The apples were sweet and good.", "It was the best apple {f.name} ever had.")
    s.maybe(0.5, "When it was time to go home, {f.name} gave {h.name} a big hug.",
            "That night, {h.name} told {h.his} [mom|dad] all about {h.his} day.")
    morals = ["{h.name} felt [warm and happy inside|proud that {h.he} could help].",
              "{h.name} learned that helping others makes you happy too."]
    if friend.rel == "friend":
        morals += ["From that day on, {h.name} and {f.name} were the best of friends.",
                   "{h.name} knew that good friends always help each other."]
    s.maybe(0.6, *morals)


def _new_friend(s: _Story) -> None:
    """Someone sits alone, and the hero asks them to play."""
    s.place(("park", "school", "beach"))
    s.open("[went {pl.to}|was playing {pl.at}]")
    s.maybe(0.4, "{h.he} [liked|loved] to play there with all {h.his} friends.",
            "It was a [warm|sunny] day, and there were many [kids|friends] to play with.")
    noun = s.pick(("girl", "boy")) if s.hero.human else s.pick([k for k, _ in _SPECIES if k != s.hero.noun])
    friend = s.slots["f"] = s.child(noun) if s.hero.human else s.animal(noun)
    s.tell("<then> {h.name} saw a [little|small] {f.noun} sitting all alone[ under a tree|].",
           "<then> {h.name} saw a {f.noun} {h.he} did not know. The {f.noun} was sitting all alone.")
    s.tell("The {f.noun} looked sad.", "The {f.noun} did not play with anyone.")
    s.maybe(0.5, "{h.name} felt sorry for the {f.noun}.", "{h.name} wanted to help.")
    s.tell("{h.name} walked over to the {f.noun}.", "{h.name} went up to the {f.noun} and smiled.")
    s.say(s.hero, "Hi! I'm {h.name}. What's your name?", "Hello! My name is {h.name}. What is your name?")
    s.say(replace(friend, name="the " + noun), "I'm {f.name}. I am new here.",
          "My name is {f.name}. I don't have any friends here.", verbs=("said", "said", "whispered"))
    s.say(s.hero, "Do you want to play with me?", "Would you like to play with me, {f.call}?")
    s.tell("{f.name} smiled and said yes.", "{f.name} smiled a big smile and nodded.")
    s.paragraph()
    s.tell("{h.name} and {f.name} [played tag|ran and laughed|played a fun game] [all day|until the sun went down].",
           "They played together until it was time to go home.")
    s.maybe(0.6, "{f.name} was not sad anymore.", "{f.name} was not alone anymore.")
    s.say(friend, "Thank you for playing with me, {h.call}!", "Can we play again tomorrow?", "This was the best day!")
    s.maybe(0.7, "From that day on, {h.name} and {f.name} were best friends.",
            "{h.name} learned that a kind word can make a new friend.",
            "{h.name} and {f.name} played together every day after that.")


# what one is scared to try: places, the animals that can try it (children can try all), the hero doing
# it, the others doing it, a fear, the action
_CHALLENGES = (
    (("beach", "pond"), ("dog", "puppy", "bear", "duck"), "swim", "swimming in the water",
     "The water looked [so big|deep and cold].",
     ("{h.he} put {h.his} feet in the water. It was not so cold!",
      "{h.he} kicked {h.his} legs and moved {h.his} arms.", "Soon, {h.he} was swimming!")),
    (("park",), (), "go down the big slide", "going down the big slide",
     "The slide was very tall.",
     ("{h.he} climbed up the steps, one by one.", "At the top, {h.he} sat down and let go.",
      "Whoosh! Down {h.he} went!")),
    (("park",), (), "ride {h.his} bike", "riding their bikes", "{h.he} had never ridden without help.",
     ("{h.he} sat on {h.his} bike, and {c.name} held it.", "{h.he} pushed and pushed, and then {c.name} let go.",
      "{h.name} was riding all by {h.self}!")),
    (("farm",), (), "ride a pony", "riding the ponies", "The pony was so big!",
     ("{c.name} helped {h.him} up onto the pony.", "The pony walked slowly around the farm.",
      "{h.name} held on tight, and soon {h.he} was smiling.")),
    (("park", "garden", "forest"), ("cat", "kitten", "bear", "mouse"), "climb the big tree", "climbing the big tree",
     "The tree was [very tall|so high].",
     ("{h.he} put {h.his} feet on the lowest branch.", "Then {h.he} climbed up, one branch at a time.",
      "At last, {h.he} could see all of {pl.the}!")),
    (("forest", "garden"), tuple(species for species, _ in _SPECIES), "jump over the little stream",
     "jumping over the little stream",
     "The water moved so fast!",
     ("{h.he} ran as fast as {h.he} could.", "Then {h.he} jumped as high as {h.he} could.",
      "{h.he} landed on the other side!")),
)


def _being_brave(s: _Story) -> None:
    """Something new is scary, someone helps, and the hero tries it anyway."""
    places, _, do, others, fear, action = s.pick(
        [c for c in _CHALLENGES if s.hero.human or s.hero.noun in c[1]])
    s.place(places)
    coach = s.family() if s.chance(0.6) else s.friend()
    s.slots["c"] = coach
    s.slots["do"], s.slots["others"] = s.fill(do), others
    s.open("went {pl.to} with {c.ref}")
    s.tell("{h.name} saw [some big kids|other children|some friends] {others}." if s.hero.human
           else "{h.name} saw other animals {others}.")
    s.tell("{h.he} wanted to {do} too, but {h.he} was scared.", "{h.he} wanted to try, but {h.he} felt scared.")
    s.maybe(0.7, fear)
    s.say(s.hero, "I can't do it. I'm scared!", "I don't want to {do}. I'm too scared.", "What if I fall?",
          verbs=("said", "whispered"))
    if s.chance(0.5):
        s.say(coach, "It's okay to be scared. I will be right here with you.",
              "You can do it! I will be right next to you.", "Everyone is scared the first time.")
    else:
        s.tell("{c.name} [held|took] {h.name}'s hand.", "{c.name} gave {h.name} a hug.")
        s.say(coach, "Just try once. I know you can do it!", "Be brave, {h.call}. You can do it!")
    s.tell("{h.name} took a [big|deep] breath.", "{h.name} thought about it. Then {h.he} nodded.")
    for step in action:
        s.tell(step)
    s.tell("It was so much fun!", "It was not scary at all. It was fun!")
    s.say(s.hero, "I did it! I did it!", "Look, {c.call}! I did it!", "Again! I want to do it again!",
          verbs=("said", "shouted"))
    s.say(coach, "I am so proud of you, {h.call}!", "You were so brave!", "Good job, {h.call}!")
    s.tell("{h.name} felt <very>proud.", "{h.name} smiled. {h.he} felt so proud.")
    s.paragraph()
    s.tell("{h.name} wanted to {do} again and again, until it was time to go home.",
           "They stayed {pl.at} until the sun went down.", "That night, {h.name} told everyone about {h.his} big day.")
    s.maybe(0.7, "From that day on, {h.name} was not scared to {do}.",
            "{h.name} learned that it is okay to be scared, and that being brave can be fun.",
            "{h.name} learned that you don't know what you can do until you try.")


_VISIT_FUN = ("baked cookies together", "played in the garden", "looked at old pictures", "fed the birds",
              "read a big book together", "planted some seeds")
_TREATS = ("sandwiches and apples", "bread and cheese", "cookies and grapes")


def _trip(s: _Story) -> None:
    """A day out with the family: getting there, having fun, a small happening, going home."""
    family = s.family()
    s.slots["treats"] = s.pick(_TREATS)
    if family.noun in ("grandma", "grandpa") and s.chance(0.5):
        fun, happenings = _VISIT_FUN, ["hungry", "story"]
        s.slots["dest"] = "{p.name}'s house".format_map(s.slots)
        s.open("went to visit {p.name}")
        s.maybe(0.6, "{h.he} [loved|liked] to visit {p.name}.", "{h.he} had not seen {p.name} for a long time.")
        s.tell("{p.name} lived in a [little|small] house [on a hill|by the sea|near the woods].")
        s.say(family, "Come in, {h.call}! I am so happy to see you!", "Hello, {h.call}! Come in!")
        s.tell("{p.name} gave {h.name} a big hug.")
    else:
        place = s.place(_OUTDOORS)
        fun, happenings = place.fun, ["hungry", "find", "critter"]
        s.slots["dest"] = place.the
        start = s.pick(("excited", "told", "went"))
        if start == "excited":
            s.open("was very excited")
            s.tell("Today, {h.he} was going {pl.to} with {p.name}!", "{p.name} was taking {h.him} {pl.to} for the day!")
        elif start == "told":
            s.open("woke up early", morning=True)
            s.say(family, "Get up, {h.call}! Today we are going {pl.to}!",
                  "Guess what, {h.call}? We are going {pl.to} today!")
            s.say(s.hero, "Yay! I love {pl.the}!", "Really? Yay!", verbs=("said", "shouted"))
            s.maybe(0.6, "{h.name} jumped out of bed and got dressed.", "{h.name} jumped up and down.")
        else:
            s.open("went {pl.to} with {p.name}")
        if start != "went":
            s.maybe(0.6, "They packed some {treats} and set off.",
                    "{h.he} put on {h.his} hat and shoes, and they set off.")
            s.tell("They [walked|went in the car|took the bus] all the way there.")
        s.tell(place.look)
    s.slots["fun1"], s.slots["fun2"], s.slots["fun3"] = (s.fill(f) for f in s.rng.sample(fun, 3))
    s.tell("First, they {fun1}. Then they {fun2}.", "They {fun1} and {fun2}.",
           "They {fun1}. After that, they {fun2}, and then they {fun3}.")
    s.maybe(0.4, "{h.name} [liked that|liked that part] best of all.", "{h.name} had so much fun.")
    for happening in s.rng.sample(happenings, s.pick((1, 2, 2))):
        if happening == "hungry":
            s.tell("After a while, {h.name} was hungry.", "Soon, {h.name}'s tummy began to rumble.")
            s.tell("They sat [on a big blanket|under a tree|in the shade] and ate {treats}.")
            s.maybe(0.5, "It was the best lunch ever!", "Everything tasted so good.")
        elif happening == "find":
            s.slots["find"] = s.pick(s.slots["pl"].finds)
            s.tell("<then> {h.name} found {find}.", "Then {h.name} saw something on the ground. It was {find}!")
            s.exchange(s.hero, family,
                       ("Look what I found, {p.call}!", "[What a nice find!|It is beautiful, {h.call}.]"),
                       ("Look, {p.call}! Can I keep it?", "[Yes, you can keep it.|Of course you can.]"))
            s.tell("{h.name} put it in {h.his} pocket[ to keep it safe|].")
        elif happening == "critter":
            s.tell(s.slots["pl"].critter)
            s.maybe(0.5, "{h.name} [laughed and laughed|had never seen anything so funny].")
        else:
            s.tell("Later, {p.name} told {h.him} a story about when {p.he} was little.")
            s.maybe(0.5, "{h.name} laughed at the funny parts.")
    s.paragraph()
    s.tell("When the sun began to go down, it was time to go home.", "Soon it was time to go home.")
    s.tell("{h.name} was tired but happy.", "{h.name} was tired, but {h.he} had a big smile.")
    s.exchange(s.hero, family, ("Can we come back [tomorrow|again soon]?", "Yes, we can come back soon."),
               ("That was the best day ever!", "[I'm glad you had fun, {h.call}.|I had fun too.]"),
               ("Thank you, {p.call}!", "You are welcome, {h.call}."))
    s.maybe(0.7, "That night, {h.name} dreamed about {dest}.", "{h.name} could not wait to go back.",
            "It was a day {h.name} would never forget.")


def _sharing(s: _Story) -> None:
    """Two children fight over a toy, it goes wrong, and they make up and take turns."""
    friend = s.friend()
    s.place(("house",) if friend.rel != "friend" else ("park", "garden", "school", "house"))
    thing = s.thing("share")
    s.slots["play"] = s.fill(s.pick(thing.play))
    s.open("was playing with {h.his} {o.name} {pl.at}")
    s.maybe(0.5, "{h.he} liked to {play}.", "{h.he} loved {h.his} {o.noun} very much.")
    s.tell("<then> {f.ref} came over.", "<then> {f.ref} came and sat next to {h.him}.")
    s.say(friend, "Can I play with your {o.noun} too?", "Can I have a turn, {h.call}?", "Please, can I play too?")
    s.say(s.hero, "No! {o.they} {o.be} mine!", "No, I am still playing with {o.it}!", "No! I had {o.it} first!",
          verbs=("said", "shouted"))
    s.tell("{f.name} [grabbed|took hold of] {o.the}.")
    s.say(friend, "But I want to play too!", "It's my turn now!", verbs=("said", "shouted"))
    s.tell("{h.name} pulled one way, and {f.name} pulled the other way.", "They pulled and pulled.")
    broke = "break" in thing.tags and s.chance(0.7)
    if broke:
        s.tell("<suddenly> [snap|crack]! {o.the} broke.", "Then there was a loud crack. {o.the} broke!")
    else:
        s.tell("<suddenly> they both fell down with a bump, and {o.the} fell out of their hands.",
               "<suddenly> {o.the} slipped, and they both fell down.")
    crying = s.chance(0.5)
    if crying:
        s.tell("{f.name} started to cry.", "{f.name} began to cry.")
        s.maybe(0.5, "{h.name} felt <very>sad too.", "{h.name} was angry, but {h.he} was sad too.")
    else:
        s.tell("Now they were both sad.", "Now nobody could play with {o.it}.")
    grown_up = s.chance(0.5)
    if grown_up:
        s.family(members=("mom", "dad", "grandma"))
        s.tell("{p.name} came to see what was wrong.",
               "{p.name} heard the crying and came to see." if crying else "{p.name} heard the noise and came to see.")
        s.say(s.slots["p"], "What happened here?", "Why are you two sad?")
        s.tell("{h.name} and {f.name} told {p.him} what happened.")
        s.say(s.slots["p"], "When you fight, nobody has fun. Why don't you take turns?",
              "Sharing is more fun than fighting. Can you play together?")
    else:
        s.tell("{h.name} looked at {f.name}.", "{h.name} sat down and thought.")
        s.tell("{h.he} did not like to see {h.his} {f.rel} sad.", "{h.he} knew that {h.he} had not been kind.")
    s.say(s.hero, "I'm sorry, {f.call}. We can play with {o.it} together.", "I'm sorry, {f.call}. You can have a turn.")
    s.say(friend, "I'm sorry too.", "Thank you, {h.call}! I'm sorry I grabbed {o.it}.")
    s.maybe(0.6, "They gave each other a big hug.", "Then they hugged.")
    if broke:
        if grown_up:
            s.tell("{p.name} helped them fix {o.the} with [some tape|a little glue].")
        else:
            s.tell("Together, they fixed {o.the} with [some tape|a little glue].")
    s.paragraph()
    s.tell("They took turns with {o.the}.", "First {h.name} played with {o.the}, and then {f.name} had a turn.",
           "They played with {o.the} together.")
    s.tell("Playing together was much more fun than playing alone.", "They laughed and had so much fun.")
    s.maybe(0.7, "{h.name} learned that sharing is [good|more fun than fighting].",
            "From that day on, {h.name} and {f.name} always took turns.",
            "{h.name} learned that it is better to share.")


# what to give: noun, plural, verb, how it is made, where it is hidden, what the one who gets it does with it
_GIFTS = (
    ("picture", False, "draw", ("{h.he} took out {h.his} crayons.",
                                "{h.he} drew [a big red heart|a yellow sun|a pretty house] and "
                                "[a rainbow|some flowers|a big tree].",
                                "Then {h.he} drew {r.name} with a big smile."),
     ("behind {h.his} back", "under {h.his} bed"), "put it on the wall"),
    ("card", False, "make", ("{h.he} folded a big piece of paper.",
                             "On the front, {h.he} drew a [big heart|pretty flower|yellow sun].",
                             "Inside, {h.he} [drew a happy face|wrote a kind note]."),
     ("behind {h.his} back", "under {h.his} pillow"), "put it on the table where everyone could see it"),
    ("flowers", True, "pick", ("{h.he} went out to the garden.",
                               "{h.he} picked [red, yellow and pink flowers|the prettiest flowers {h.he} could find].",
                               "Then {h.he} tied them together with a ribbon."),
     ("behind {h.his} back",), "put them in a vase of water"),
    ("cake", False, "bake", ("{h.name} and {x.name} mixed flour, eggs and sugar in a big bowl.",
                             "They put the cake in the oven.", "Soon, the whole house smelled so good!"),
     ("in the kitchen",), "cut it, and they all ate it together"),
    ("cookies", True, "bake", ("{h.name} and {x.name} made the dough in a big bowl.",
                               "They cut the cookies into [stars and hearts|little circles].",
                               "Soon, the cookies were warm and golden."),
     ("in the kitchen",), "shared them with everyone"),
)


def _gift(s: _Story) -> None:
    """The hero makes a gift for someone and surprises them."""
    in_family = s.chance(0.6)
    receiver = s.slots["r"] = s.family() if in_family else s.friend(siblings=False)
    noun, plural, verb, making, hides, use = s.pick(_GIFTS if s.hero.human else _GIFTS[2:3])
    s.slots["g"] = _Thing(noun, noun, plural, "thing")
    if verb == "bake":
        s.family("x", members=tuple(m for m in ("mom", "dad", "grandma") if m != receiver.noun))
    occasion = s.pick(("birthday", "sick", "thanks") if in_family else ("birthday", "sick"))
    s.open("woke up [early|with a big smile]", morning=True)
    s.tell({"birthday": "Today was {r.ref}'s birthday!",
            "sick": "{r.ref} was sick in bed with a bad cold.",
            "thanks": "{r.ref} always worked so hard, and {h.name} wanted to say thank you."}[occasion])
    s.tell("{h.name} wanted to give {r.name} something special.", "{h.name} wanted to make {r.name} happy.")
    s.maybe(0.6, "But what could {h.he} give?", "But {h.he} did not have any money.")
    s.tell("<then> {h.he} had an idea.", "{h.he} thought and thought. Then {h.he} had an idea!")
    s.tell("{h.he} would " + verb + " {g.a} for {r.name}!")
    if verb == "bake":
        s.tell("{h.he} asked {x.name} to help.")
    for step in making:
        s.tell(step)
    s.maybe(0.5, "{h.name} was a little worried. What if {r.name} did not like {g.it}?",
            "{h.name} looked at {g.the} and smiled.")
    s.tell("{h.he} hid {g.the} " + s.pick(hides) + ".")
    s.paragraph()
    s.tell({"birthday": "Later, {h.name} ran to {r.name}.", "sick": "Later, {h.name} went to see {r.name}.",
            "thanks": "When {r.name} sat down to rest, {h.name} came over."}[occasion])
    s.say(s.hero, {"birthday": "Surprise! Happy birthday, {r.call}!",
                   "sick": "This is for you, {r.call}. I hope you feel better soon!",
                   "thanks": "This is for you, {r.call}. Thank you for everything!"}[occasion], verbs=("said",))
    s.say(receiver, "Is this for me? Oh, {h.call}, {g.they} {g.be} [beautiful|wonderful]!",
          "Thank you, {h.call}! I love {g.it}!")
    s.tell("{r.name} gave {h.name} a big hug.", "{r.name} smiled and gave {h.name} a big hug.")
    s.tell("{r.he} " + use + ".")
    s.maybe(0.7, "{h.name} felt warm and happy inside.",
            "{h.name} learned that giving can be even more fun than getting.",
            "{h.name} learned that the best gifts come from the heart.")


# plan, what it is called in dialogue, places, getting ready
_PLANS = (
    ("have a picnic {pl.at}", "have our picnic", ("park", "garden", "beach"),
     "{p.name} made sandwiches, and {h.name} put apples and cookies in a big basket."),
    ("fly {h.his} new kite {pl.at}", "fly my kite", ("park", "beach"),
     "{h.name} got {h.his} kite ready. It was red and yellow, with a long tail."),
    ("play {pl.at} all day", "play outside", ("park", "garden", "beach"),
     "{h.he} put on {h.his} shoes and got {h.his} ball."),
)
_INSIDE = (
    ("{p.name} put a big blanket on the floor.", "They had their picnic right there in the living room!"),
    ("They built a fort with blankets and pillows.",
     "Inside the fort, they [read books|told funny stories] by the light of a little lamp."),
    ("They baked cookies together.", "{h.name} helped mix the dough, and {p.name} let {h.him} lick the spoon."),
    ("They painted pictures of [the sun|a sunny day|the sea].", "{h.name} used lots of yellow and blue."),
    ("They played a fun game on the floor.", "{h.name} won [two times|three times]!"),
)


def _rainy_day(s: _Story) -> None:
    """A plan for a day outside is spoiled by rain, and the day is fun anyway."""
    plan, plan_short, places, ready = s.pick(_PLANS)
    s.place(places)
    s.family(members=("mom", "dad", "grandma", "grandpa"))
    s.slots["plan"], s.slots["plan_short"] = s.fill(plan), plan_short
    s.open("[woke up early|was very excited]")
    s.tell("Today, {h.he} and {p.name} were going to {plan}.", "{p.name} had said that they could {plan} today.")
    s.tell(ready)
    s.tell("But then, the sky [grew dark|turned gray].", "But then, big gray clouds came over the town.")
    s.tell("<then> it started to rain.", "Drip, drop. Soon it was raining hard.")
    s.say(s.hero, "Oh no! Now we can't {plan_short}!", "Oh no! The rain ruined everything!", verbs=("said", "cried"))
    s.tell("{h.name} sat by the window and looked at the rain.", "{h.name} felt <very>sad.")
    s.maybe(0.5, "The rain went on and on.", "{h.he} did not want to stay inside all day.",
            "Big drops ran down the window.")
    s.say(s.slots["p"], "Don't be sad, {h.call}. I have an idea!", "We can still have fun inside!")
    inside = _INSIDE if plan_short == "have our picnic" else _INSIDE[1:]
    for step in s.pick(inside):
        s.tell(step)
    s.tell("{h.name} laughed and laughed.", "It was so much fun!", "{h.name} forgot all about the rain.")
    s.paragraph()
    if s.chance(0.6):
        s.tell("After a while, the rain stopped.", "Later, the rain stopped.")
        s.tell("The sun came out, and there was a [big|pretty] rainbow in the sky.")
        s.tell("{h.name} ran outside and jumped in the puddles. Splash!",
               "They went outside and looked at the rainbow together.")
    else:
        s.tell("The rain did not stop all day, but {h.name} did not mind.")
    s.maybe(0.7, "{h.name} learned that a rainy day can be fun too.",
            "From that day on, {h.name} was not sad when it rained.")


def _mistake(s: _Story) -> None:
    """The hero does something wrong, feels bad, says sorry and makes it right."""
    kind = s.pick(("ball", "cookies", "wall", "dare", "take"))
    if kind == "dare":
        _dare(s)
        return
    if kind == "take":
        _taking(s)
        return
    s.place(("house",))
    s.family(members=("mom", "dad", "grandma"))
    if kind == "ball":
        s.open("was playing with {h.his} ball at home")
        s.say(s.slots["p"], "Please don't play ball in the house, {h.call}.", "No ball in the house, please!")
        s.say(s.hero, "Okay, {p.call}.")
        s.tell("But when {p.name} went [to the kitchen|outside], {h.name} [kicked|threw] the ball again.")
        s.tell("The ball hit {p.name}'s favorite vase. Crash! The vase fell and broke.")
        done, wrong, fix = ("played ball in the house", "the broken vase",
                            "Together, they [picked up the pieces|glued the vase back together].")
        s.tell("{h.name} was scared.", "{h.name} knew {h.he} did something wrong.")
        back = "When {p.name} came back, {p.he} saw {wrong}."
    elif kind == "cookies":
        s.open("came into the kitchen")
        s.tell("{p.name} had baked cookies, and they smelled so good.")
        s.say(s.slots["p"], "You can have one after dinner, {h.call}.", "No cookies before dinner, okay?")
        s.tell("But when {p.name} went out, {h.name} took one cookie. Then {h.he} took another one.")
        done, wrong, fix = ("ate the cookies", "the plate",
                            "Then {h.name} helped {p.name} [set the table|wash the dishes] for dinner.")
        s.tell("{h.name} felt bad inside.", "{h.name} knew {h.he} did something wrong.")
        back = "When {p.name} came back, {p.he} saw {wrong}. There were only a few cookies left!"
    else:
        s.open("was drawing pictures with {h.his} crayons")
        s.tell("{h.he} drew a big sun, and then a big house.")
        s.tell("Then {h.he} had an idea. {h.he} drew a big flower on the wall!")
        done, wrong, fix = ("drew on the wall", "the flower on the wall",
                            "Then {h.name} helped {p.name} wash the wall until it was clean.")
        s.tell("{h.name} looked at the wall. What would {p.name} say?", "{h.name} knew {h.he} did something wrong.")
        back = "<then> {p.name} came in and saw {wrong}."
    s.slots["done"], s.slots["wrong"] = done, wrong
    s.paragraph()
    s.tell(back)
    s.say(s.slots["p"], "What happened here, {h.call}?", "{h.call}, do you know what happened?")
    if s.chance(0.4):
        s.say(s.hero, "It wasn't me!", "I don't know!")
        s.tell("But {h.name} did not feel good. {h.he} knew {h.he} had to tell the truth.")
    s.say(s.hero, "I'm sorry, {p.call}. I {done}.", "It was me. I {done}. I'm sorry.", verbs=("said", "whispered"))
    s.tell("{p.name} was quiet for a moment. Then {p.he} gave {h.name} a hug.",
           "{p.name} looked at {h.name} and [smiled|gave {h.him} a hug].")
    s.say(s.slots["p"], "Thank you for telling me the truth, {h.call}. But next time, please listen.",
          "I am glad you told me the truth. Next time, please listen to me.")
    s.tell(fix)
    s.maybe(0.7, "From that day on, {h.name} always listened to {p.name}.",
            "{h.name} learned that it is always best to tell the truth.")


def _dare(s: _Story) -> None:
    """A friend dares the hero to climb too high, and the hero learns to say no."""
    friend = s.friend(siblings=False)
    s.place(("park", "garden", "forest"))
    s.open("was playing {pl.at} with {f.ref}")
    s.tell("There was a [very tall|big, old] tree {pl.at}.")
    s.say(friend, "I dare you to climb to the top of the tree!", "I bet you can't climb that tree!")
    s.tell("{h.name} did not want to look scared.", "{h.name} did not want {f.name} to think {h.he} was scared.")
    s.tell("So {h.he} climbed up, higher and higher.")
    s.tell("Then {h.he} looked down. It was so high!")
    s.tell("{h.name} could not get down, and {h.he} started to cry.")
    s.say(s.hero, "Help! I can't get down!", verbs=("cried", "shouted"))
    s.family(members=("dad", "mom", "grandpa"))
    s.tell("{f.name} ran to get {h.name}'s {p.noun}.")
    s.tell("{p.name} came [quickly|running] and helped {h.name} down, one branch at a time.")
    s.say(s.hero, "I'm sorry, {p.call}. I should not have climbed so high.", "I'm sorry. I was silly.",
          verbs=("said", "whispered"))
    s.say(s.slots["p"], "I'm glad you are safe. Don't ever do something unsafe just because of a dare.",
          "It's okay. But a dare is never a good reason to do something unsafe.")
    s.say(friend, "I'm sorry too, {h.call}. That was a bad idea.")
    s.paragraph()
    s.tell("Then they played a safe game on the grass.", "After that, they played tag on the grass.")
    s.maybe(0.7, "From that day on, {h.name} said no to silly dares.",
            "{h.name} learned that being brave does not mean doing something unsafe.")


def _taking(s: _Story) -> None:
    """The hero takes a friend's toy home, feels bad, and brings it back."""
    friend = s.friend(siblings=False)
    s.thing("share")
    s.family(members=("mom", "dad"))
    s.open("went to play at {f.ref}'s house")
    s.tell("{f.name} had {o.a}.", "{f.name} showed {h.name} {f.his} {o.name}.")
    s.tell("{h.name} liked {o.the} so much.", "{h.name} wanted {o.it} very much.")
    s.tell("When it was time to go home, {h.name} put {o.the} in {h.his} bag without asking.")
    s.tell("That night, {h.name} could not sleep.", "At home, {h.name} did not feel good.")
    s.tell("{h.he} knew that {h.he} had done something wrong.", "{h.he} kept thinking about {f.name}.")
    s.tell("{h.he} told {p.name} what {h.he} had done.")
    s.say(s.slots["p"], "What do you think you should do?", "You should give {o.it} back and say sorry.")
    s.paragraph()
    s.tell("The next day, {h.name} went to {f.name}'s house.",
           "The next morning, {h.name} and {p.name} went to see {f.name}.")
    s.say(s.hero, "I'm sorry, {f.call}. I took your {o.noun}. Here {o.they} {o.be}.", verbs=("said", "whispered"))
    s.say(friend, "Thank you for bringing {o.it} back, {h.call}.", "It's okay. Thank you for telling me.")
    s.tell("{f.name} smiled, and they played with {o.the} together.")
    s.maybe(0.7, "From that day on, {h.name} always asked before taking something.",
            "{h.name} learned that it is wrong to take things that are not yours.")


# what scares the hero in the dark: what is heard or seen, what it really was
_NIGHT_THINGS = (
    ("heard a tap, tap, tap at the window", "It was only a branch of the tree, moving in the wind."),
    ("saw a big, dark shadow on the wall", "It was only {h.his} coat on the chair!"),
    ("heard a strange sound outside", "It was only an owl in the tree outside, saying, \"Whoo, whoo!\""),
    ("heard a scratch, scratch at the door", "It was only {f.ref}! {f.name} wanted to sleep on {h.name}'s bed."),
)


def _dark(s: _Story) -> None:
    """At night a sound or a shadow scares the hero, and it turns out to be nothing."""
    s.family(members=("mom", "dad"))
    heard, really = s.pick(_NIGHT_THINGS)
    if "{f." in really:
        s.pet(("dog", "cat", "puppy", "kitten"))
    s.open("was getting ready for bed", night=True)
    s.tell("{h.he} [brushed {h.his} teeth|put on {h.his} pajamas] and got into bed.")
    s.tell("{p.name} read {h.him} a story and gave {h.him} a kiss.")
    s.say(s.slots["p"], "Good night, {h.call}. Sleep well.")
    s.tell("Then {p.he} turned off the light. The room was very dark.")
    s.tell("<suddenly> {h.name} " + heard + ".")
    s.tell("{h.he} pulled the blanket over {h.his} head.", "{h.he} was so scared that {h.he} could not move.")
    s.say(s.hero, "{p.call}! {p.call}! Come quick!", "{p.call}! I'm scared!", verbs=("cried", "shouted"))
    s.tell("{p.name} came [running|in] and turned on the light.")
    s.say(s.slots["p"], "What's wrong, {h.call}?", "What is it, {h.call}?")
    s.say(s.hero, "There is something in my room!", "I think there is a monster!", verbs=("said", "whispered"))
    s.tell("{p.name} held {h.name}'s hand, and they looked together.")
    s.tell(really)
    s.tell("{h.name} laughed.", "{h.name} smiled. It was not scary at all.")
    s.tell("{p.name} [gave {h.him} a little night light|left the door open a little|sang {h.him} a soft song].")
    s.say(s.slots["p"], "There is nothing to be scared of. I am right next door.", "You are safe here, {h.call}.")
    s.paragraph()
    s.tell("{h.name} hugged {h.his} teddy bear and closed {h.his} eyes.")
    s.tell("Soon, {h.he} was fast asleep.", "Soon, {h.he} was sleeping and dreaming happy dreams.")
    s.maybe(0.7, "From that night on, {h.name} was not scared of the dark.",
            "{h.name} learned that the dark is not so scary after all.")


# a small animal in trouble: name, its sound, where it is, its trouble, places, how it ends
_RESCUES = (
    ("baby bird", "Peep, peep!", "under a tree", "It had fallen out of its nest.", ("garden", "park", "forest"),
     "nest"),
    ("baby duck", "Quack, quack!", "in the tall grass", "It could not find its mother.", ("park", "pond", "farm"),
     "duck"),
    ("kitten", "Meow!", "under a bush", "It was wet and cold, and it was all alone.", ("garden", "park"), "home"),
    ("puppy", "Woof!", "behind a tree", "It was lost and could not find its way home.", ("park", "forest"), "home"),
)


def _rescue(s: _Story) -> None:
    """The hero finds a small animal in trouble and helps it."""
    animal, sound, where, trouble, places, ending = s.pick(_RESCUES)
    s.slots["a"] = animal
    s.place(places)
    family = s.family(members=("mom", "dad", "grandma", "grandpa"))
    s.open("was walking {pl.at} with {p.name}")
    s.tell("<suddenly> {h.he} heard a [small|little] sound. " + sound)
    s.tell("{h.name} looked " + where + " and saw a [little|tiny] {a}.")
    s.tell(trouble)
    s.say(s.hero, "Poor little {a}! Are you lost?", "Oh, you poor thing!", "Don't be scared, little {a}.")
    s.maybe(0.5, "The {a} was shaking.", "The {a} looked very small and scared.")
    s.tell("{h.name} picked up the {a} very [gently|carefully].",
           "{h.name} sat down next to the {a} and talked to it softly.")
    s.maybe(0.5, "{h.he} [held it close to keep it warm|gave it a little water].")
    s.exchange(s.hero, family, ("{p.call}, can we help it?", "Yes, let's help it [find its home|get back home]."),
               ("{p.call}, what should we do?", "Let's help it find its home."))
    if ending == "nest":
        s.tell("They looked up and saw a little nest in the tree.")
        s.tell("{p.name} reached up and put the baby bird back in its nest.")
        s.tell("The mother bird came back and sang a happy song.")
    elif ending == "duck":
        s.tell("They walked to the water, and there was the mother duck!")
        s.tell("The baby duck ran to her as fast as it could.")
        s.tell("The mother duck said, \"Quack!\" It sounded like thank you.")
    elif s.chance(0.5):
        owner = s.slots["f"] = s.child(s.pick(("girl", "boy")))
        s.tell("<then> {f.intro} came running.")
        s.say(owner, "My {a}! I looked everywhere for it!", "There you are! Thank you for finding my {a}!")
        s.tell("The {a} [jumped into {f.name}'s arms|ran to {f.name}].")
        s.tell("{f.name} smiled and said thank you to {h.name} again and again.")
    else:
        s.slots["petname"] = s.pick(HE_PET_NAMES + SHE_PET_NAMES)
        s.tell("They asked everyone, but nobody knew where the {a} lived.")
        s.say(s.hero, "Can we keep it, {p.call}? Please?", verbs=("asked",))
        s.say(family, "Yes, we can. But you must take good care of it.", "Okay. It can live with us.")
        s.tell("{h.name} named the {a} {petname}.")
    s.paragraph()
    s.maybe(0.6, "On the way home, {h.name} held {p.name}'s hand and talked about the little {a}.",
            "That night, {h.name} told {h.his} [friends|whole family] all about the {a}.")
    s.tell("{h.name} was so happy.", "{h.name} felt warm and happy inside.")
    s.maybe(0.7, "{h.name} learned that it is good to be kind to animals.",
            "From that day on, {h.name} always looked out for little animals.")


# arc, whether an animal can be its hero
_ARCS = (
    (_lost_and_found, True), (_helping, True), (_being_brave, True), (_trip, False), (_sharing, True),
    (_gift, True), (_rainy_day, False), (_mistake, False), (_dark, False), (_rescue, False),
)


# --- The public API ------------------------------------------------------------------------------

def generate_story(rng: random.Random) -> str:
    """One story of MIN_WORDS to MAX_WORDS words, drawn with rng."""
    while True:
        story = _Story(rng)
        arc = story.pick([arc for arc, animals in _ARCS if animals or story.hero.human])
        arc(story)
        text = story.text()
        if MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            return text


def generate_stories(seed: int, n: int) -> list[str]:
    """n stories, the same for the same seed."""
    rng = random.Random(seed)
    return [generate_story(rng) for _ in range(n)]


def split_corpus(seed: int, n_train: int, n_valid: int) -> tuple[list[str], list[str]]:
    """n_train and n_valid distinct stories; a story's text decides its side, so none is in both."""
    rng = random.Random(seed)
    train: list[str] = []
    valid: list[str] = []
    seen: set[bytes] = set()
    while len(train) < n_train or len(valid) < n_valid:
        story = generate_story(rng)
        digest = hashlib.sha256(story.encode("utf-8")).digest()
        if digest in seen:
            continue
        seen.add(digest)
        side, size = (valid, n_valid) if int.from_bytes(digest[:8], "big") % VALID_EVERY == 0 else (train, n_train)
        if len(side) < size:
            side.append(story)
    return train, valid


# A sentence ends at '.', '!' or '?' outside quotes, or with a quotation that ends in one of them and is
# followed by a new sentence ('"Let's go!" Then ...'), but not by its speech tag ('"Let's go!" said Tom.').
_FINAL_QUOTE = r'"[^"\n]*[.!?]"(?=\s*$|\s+["A-Z])'
_SENTENCE = re.compile(rf'(?=\S)[^"\n.!?]*(?:(?!{_FINAL_QUOTE})"[^"\n]*"[^"\n.!?]*)*(?:[.!?](?=\s|$)|{_FINAL_QUOTE})')
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def sentences(story: str) -> list[str]:
    """A story's sentences, quotations kept whole: '"Can you help me?" asked Lily.' is one sentence."""
    return _SENTENCE.findall(story)


def distinct_sentences(stories) -> int:
    """The number of distinct sentences in the stories."""
    return len({sentence for story in stories for sentence in sentences(story)})


def vocabulary(stories) -> set[str]:
    """The distinct lowercase words of the stories."""
    words: set[str] = set()
    for story in stories:
        words.update(_WORD.findall(story.lower()))
    return words


def as_text(stories) -> str:
    """Stories as one text, each followed by the end-of-text token (how the model saw them)."""
    return "".join(story + STORY_SEPARATOR for story in stories)


def held_out_text(n: int, seed: int = 0) -> str:
    """The first ``n`` validation stories of the training seed: text the model never trained on."""
    return as_text(split_corpus(seed, 0, n)[1])


def calibration_text(n: int = 64) -> str:
    """Stories for calibrating activation scales: validation-side stories of another seed, so they
    are neither training nor the held-out text accuracy is measured on."""
    return as_text(split_corpus(1, 0, n)[1])
