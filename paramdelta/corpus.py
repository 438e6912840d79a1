"""A seeded synthetic English-like corpus of short, specific documents.

The demo splits this corpus at random into training members and non-members, so every
document is drawn independently from one distribution: pick a genre (biography, travel
note, recipe, weather report, trade record, ...), fill a fresh set of invented names,
places and numbers, and write 2-4 sentences from that genre's sentence templates.
Documents outside 25-60 words, and repeats, are redrawn, which keeps the draws i.i.d.
The invented names and numbers give a model that memorised a member something specific
to remember.  All wording and word lists are written for this project.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

MIN_WORDS = 25
MAX_WORDS = 60

# Invented names and places are composed from syllables, giving tens of thousands of
# combinations so that documents rarely share their particulars.
_FIRST_STARTS = (
    "Al",
    "Bri",
    "Ca",
    "Dor",
    "El",
    "Fen",
    "Gar",
    "Hes",
    "Il",
    "Jo",
    "Kes",
    "Li",
    "Mar",
    "Ner",
    "Or",
    "Pe",
    "Ro",
    "Sa",
    "Tam",
    "Ul",
    "Ves",
    "Wen",
    "Ya",
    "Zo",
    "Bel",
    "Cor",
    "Da",
    "Ev",
    "Ha",
    "Is",
    "Lu",
    "Mo",
    "Ny",
    "Os",
    "Ri",
    "Se",
    "Te",
    "Va",
)
_FIRST_ENDS = (
    "an",
    "ella",
    "ric",
    "ina",
    "wen",
    "o",
    "ard",
    "issa",
    "el",
    "ora",
    "in",
    "ette",
    "mund",
    "ara",
    "ius",
    "ley",
    "wyn",
    "ita",
)
_SURNAME_STARTS = (
    "Ash",
    "Brack",
    "Cold",
    "Dun",
    "Elder",
    "Fair",
    "Green",
    "Hollow",
    "Iron",
    "Kettle",
    "Lark",
    "Marsh",
    "North",
    "Oak",
    "Pen",
    "Quarry",
    "Red",
    "Stone",
    "Thorn",
    "Under",
    "Vale",
    "West",
    "Wither",
    "Yarrow",
    "Birch",
    "Crane",
    "Flint",
    "Gable",
    "Heath",
    "Moss",
)
_SURNAME_ENDS = (
    "wood",
    "field",
    "by",
    "well",
    "ford",
    "ridge",
    "more",
    "ton",
    "brook",
    "combe",
    "hart",
    "wick",
    "ley",
    "man",
    "er",
    "stead",
)
_TOWN_STARTS = (
    "Ambr",
    "Bel",
    "Carr",
    "Dray",
    "Eld",
    "Fal",
    "Glen",
    "Harl",
    "Ives",
    "Kil",
    "Lang",
    "Mor",
    "Nes",
    "Ox",
    "Pol",
    "Rav",
    "Sel",
    "Tarn",
    "Usk",
    "Wald",
    "Yel",
    "Brin",
    "Cul",
    "Dun",
    "Quen",
)
_TOWN_ENDS = (
    "haven",
    "mouth",
    "bury",
    "stead",
    "holm",
    "port",
    "dale",
    "gate",
    "wick",
    "minster",
    "ford",
    "ness",
    "thorpe",
    "field",
    "cliff",
)
_RIVER_NAMES = (
    "Aln",
    "Brede",
    "Colne",
    "Dove",
    "Esk",
    "Frome",
    "Ivel",
    "Lune",
    "Marle",
    "Nene",
    "Ouse",
    "Tavy",
    "Wey",
    "Yeo",
)
_REGIONS = (
    "the northern hills",
    "the salt marshes",
    "the lake country",
    "the eastern plain",
    "the river valley",
    "the coastal downs",
    "the high moors",
    "the southern orchards",
)

_OCCUPATIONS = (
    "baker",
    "clockmaker",
    "ferryman",
    "schoolteacher",
    "weaver",
    "surveyor",
    "glassblower",
    "beekeeper",
    "printer",
    "shipwright",
    "apothecary",
    "cartographer",
    "miller",
    "carpenter",
    "potter",
    "bookbinder",
    "lamplighter",
    "innkeeper",
    "tailor",
    "stonemason",
    "fisherman",
    "nurse",
    "postmaster",
    "librarian",
    "blacksmith",
    "gardener",
    "musician",
    "botanist",
)
_TRAITS = ("patient", "stubborn", "cheerful", "quiet", "careful", "restless", "generous", "curious", "thrifty", "proud")
_COLOURS = (
    "red",
    "blue",
    "green",
    "amber",
    "grey",
    "violet",
    "ochre",
    "crimson",
    "pale yellow",
    "dark brown",
    "silver",
    "white",
    "black",
    "teal",
)
_MATERIALS = ("brass", "oak", "copper", "pine", "iron", "clay", "wicker", "pewter", "walnut", "tin", "glass", "leather")
_ITEMS = (
    "lantern",
    "kettle",
    "chest",
    "clock",
    "compass",
    "teapot",
    "umbrella",
    "telescope",
    "sewing box",
    "music box",
    "writing desk",
    "birdcage",
    "rocking chair",
    "flute",
    "spinning wheel",
    "barometer",
    "mirror",
    "bell",
    "ledger",
    "pocket knife",
)
_BUILDINGS = (
    "mill",
    "chapel",
    "library",
    "bakery",
    "bridge",
    "granary",
    "lighthouse",
    "market hall",
    "school",
    "boathouse",
    "tannery",
    "inn",
)
_ANIMALS = ("goats", "geese", "sheep", "ponies", "hens", "pigs", "cows", "ducks")
_BIRDS = ("heron", "kestrel", "curlew", "wren", "kingfisher", "barn owl", "lapwing", "nightjar", "redstart", "grebe")
_INGREDIENTS = (
    "barley",
    "leeks",
    "carrots",
    "onions",
    "apples",
    "plums",
    "lentils",
    "turnips",
    "honey",
    "oats",
    "pears",
    "mushrooms",
    "cabbage",
    "walnuts",
    "parsnips",
    "cherries",
    "beans",
    "rye flour",
)
_SPICES = (
    "thyme",
    "sage",
    "nutmeg",
    "cinnamon",
    "caraway",
    "black pepper",
    "mint",
    "fennel seed",
    "cloves",
    "rosemary",
)
_DISHES = ("pie", "stew", "soup", "tart", "loaf", "pudding", "broth", "cake", "porridge", "bake")
_GOODS = (
    "wool",
    "salt",
    "timber",
    "barley",
    "tea",
    "linen",
    "copper wire",
    "lamp oil",
    "candles",
    "dried fish",
    "cider",
    "slate",
    "hides",
    "flax",
)
_CURRENCIES = ("crowns", "marks", "florins", "shillings", "guilders")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DIRECTIONS = ("north", "south", "east", "west", "northeast", "northwest", "southeast", "southwest")
_SKIES = (
    "clear skies",
    "low cloud",
    "steady drizzle",
    "thick fog",
    "scattered showers",
    "bright sunshine",
    "light snow",
    "heavy rain",
)
_TEAM_NAMES = ("Rovers", "Wanderers", "Athletic", "United", "Harriers", "Rangers", "Albion", "Mariners")
_SPORTS = ("cricket", "rowing", "football", "hockey", "bowls", "tennis")
_SHIP_PREFIXES = ("Morning", "Silver", "Northern", "Lady", "Brave", "Quiet", "Golden", "Grey")
_SHIP_NOUNS = ("Star", "Gull", "Tern", "Hope", "Heron", "Venture", "Otter", "Rose")
_INSTRUMENTS = ("violin", "cello", "harp", "accordion", "piano", "clarinet", "trumpet", "fiddle")
_SUBJECTS = ("mathematics", "geography", "botany", "history", "music", "drawing", "astronomy", "chemistry")
_STREET_KINDS = ("Street", "Lane", "Row", "Road", "Square", "Hill")

# Each genre: opening sentences (one is used) and body sentences (1-3 are used, in a
# random order).  Slots are filled from a fresh draw of _particulars() per document.
_GENRES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "biography": (
        (
            "{name} was born in {town} in {year} and worked as {a_occupation} for {n_mid} years.",
            "Born in {year}, {name} grew up above {a_building} in {town}.",
            "The {occupation} {name} spent most of a long life in {town}, near the river {river}.",
        ),
        (
            "In {year2} {first} married {name2}, {a_occupation2} from {town2}.",
            "Neighbours remembered {first} as {trait} and fond of the {instrument}.",
            "{first} kept {a_item} on the windowsill that had belonged to a grandmother.",
            "At the age of {age}, {first} moved to {town2} and opened a small workshop.",
            "{first} died in {year3} and is buried beside the old {building}.",
        ),
    ),
    "travel": (
        (
            "We reached {town} on a {weekday} in {month}, after {n_small} days on the road from {town2}.",
            "The road to {town} follows the river {river} through {region}.",
            "Travellers to {town} should arrive before dusk, as the gates close at {hour} o'clock.",
        ),
        (
            "The inn by the {building} charged {price} {currency} for a room and supper.",
            "From the hill we counted {n_mid2} {colour} roofs and one crooked tower.",
            "{a_occupation} named {name} showed us the way across the {colour2} marsh.",
            "The market sells {good} and {ingredient} on {weekday}s.",
            "Nobody in {town} could tell us why the clock on the {building} stopped in {year}.",
        ),
    ),
    "news": (
        (
            "The council of {town} voted {n_small} to {n_small2} on {weekday} to repair the old {building}.",
            "A fire broke out at the {building} in {town} early on {weekday} morning.",
            "Residents of {town} gathered on {street} on {weekday} to welcome a new {occupation}.",
        ),
        (
            "The work is expected to cost {n_big} {currency} and to finish by {month}.",
            "{name}, who has lived on {street} for {n_mid2} years, said the town had waited long enough.",
            "No one was hurt, although {n_small} {animals} had to be led out through the yard.",
            "A second meeting is planned for the {day_nth} of {month}.",
            "The {occupation} {name2} offered to lend {a_item} for the occasion.",
        ),
    ),
    "recipe": (
        (
            "To make {first}'s {ingredient} {dish}, soften {n_small} {ingredient2} in butter with a pinch of {spice}.",
            "This {dish} of {ingredient} and {ingredient2} comes from a farmhouse outside {town}.",
            "For a {dish} that feeds {n_small} people, you will need {n_mid} grams of {ingredient}.",
        ),
        (
            "Add the {ingredient2} and cook slowly for {n_mid2} minutes, stirring now and then.",
            "Season with {spice} and a little {spice2}, then leave it to rest.",
            "Bake in {a_colour} dish until the top turns golden, about {n_mid2} minutes.",
            "Serve it warm with rye bread and a cup of {good}.",
            "{name} insists that the secret is a spoonful of honey added at the very end.",
        ),
    ),
    "weather": (
        (
            "The forecast for {town} on {weekday} is {sky}, with a high of {temp} degrees.",
            "Weather for {region} this {weekday}: {sky} in the morning, clearing later.",
            "Expect {sky} over {town} and the valley of the {river} through {weekday}.",
        ),
        (
            "Winds from the {direction} will reach {n_mid2} kilometres an hour by evening.",
            "Around {n_small} millimetres of rain may fall on the higher ground.",
            "Night temperatures will drop to {temp2} degrees near the {building}.",
            "Ferries from {town2} may run late if the wind turns {direction2}.",
            "The last time {month} was this mild in {town} was in {year}.",
        ),
    ),
    "trade": (
        (
            "On the {day_nth} of {month} {year}, {name} sold {n_mid} sacks of {good} to a buyer from {town}.",
            "Ledger entry, {month} {year}: {n_big} bales of {good} received at the {town} warehouse.",
            "The trading house of {surname} and {surname2} shipped {good} from {town} to {town2} in {year}.",
        ),
        (
            "The price agreed was {price} {currency} per sack, paid in two parts.",
            "{n_small} barrels of {good2} were returned as spoiled.",
            "The goods travelled by cart along the {river} and arrived {n_small2} days late.",
            "A receipt was signed by the clerk {name2} and kept in {a_item}.",
            "Profit for the quarter came to {n_big} {currency}, the best since {year3}.",
        ),
    ),
    "letter": (
        (
            "Dear {first2}, the {building} in {town} is finally finished, and I think of you every time I pass it.",
            "My dear {first2}, I am writing from {town}, where it has rained for {n_small} days.",
            "Dear {first2}, thank you for the {material} {item} you sent, which arrived on {weekday}.",
        ),
        (
            "The {animals} are well, though one of them escaped into the {colour} orchard.",
            "I have taken work as {a_occupation} and earn {price} {currency} a week.",
            "Please tell {name} that the debt of {n_mid2} {currency} is forgiven.",
            "I hope to visit {town2} in {month}, if the roads allow.",
            "Your loving {first}, who still keeps your letters in {a_material} box.",
        ),
    ),
    "catalogue": (
        (
            "Item {n_big}: {a_item} made in {town} around {year}, {n_mid} centimetres tall.",
            "This {colour} {item} was made by the {occupation} {name} in {year}.",
            "Catalogue number {n_big} is {a_item} recovered from a cellar in {town}.",
        ),
        (
            "It is decorated with {n_small} painted {birds} and a border of {colour2} leaves.",
            "The base carries the maker's mark, a small {bird} inside a circle.",
            "It was donated to the museum by {name2} of {town2} in {year2}.",
            "One hinge has been replaced, and the original key is missing.",
            "Similar pieces sold in {town2} for about {price} {currency}.",
        ),
    ),
    "sport": (
        (
            "{town} {team} beat {town2} {team2} by {score_won} to {score_lost} in a {sport} match on {weekday}.",
            "The {sport} final between {town} and {town2} was played in {sky} on the {day_nth} of {month}.",
            "A crowd of {n_big} watched {town} {team} lose at home on {weekday}.",
        ),
        (
            "{name} scored twice in the last {n_small} minutes.",
            "The captain, {name2}, called it the finest game since {year}.",
            "Tickets cost {price} {currency}, and {a_occupation} sold hot {ingredient} at the gate.",
            "The teams meet again in {month} on the field behind the {building}.",
            "Play was stopped for {n_mid2} minutes when {animals} wandered onto the ground.",
        ),
    ),
    "notice": (
        (
            "Lost on {weekday} near the {building} in {town}: {a_item} with the initials {initials}.",
            "Found on {street}, {town}: {a_colour} {item}, slightly damaged.",
            "Missing since {weekday}: {a_colour} dog answering to the name of {first2}.",
        ),
        (
            "The owner, {name}, offers a reward of {price} {currency}.",
            "Please bring it to the {occupation} on {street}, any day except {weekday}.",
            "It was last seen near the river {river} at about {hour} o'clock.",
            "It has great value to the family, having been bought in {town2} in {year}.",
            "Enquiries to {name2}, number {n_mid2}, {street}.",
        ),
    ),
    "ship_log": (
        (
            "Ship's log of the {ship}, {day} {month} {year}: left {town} harbour at {hour} in the morning.",
            "The {ship} sailed from {town} for {town2} with {n_mid} crew and a cargo of {good}.",
            "Log, {ship}, day {n_small}: wind {direction}, {sky}, sea moderate.",
        ),
        (
            "Sighted {n_small} fishing boats and {a_colour} buoy off the point.",
            "The cook, {name}, reported that the {ingredient} had gone bad.",
            "Made {n_mid2} nautical miles since noon, course {direction2}.",
            "Captain {surname2} ordered the {colour2} sail mended before nightfall.",
            "We expect to reach {town2} by {weekday} if the weather holds.",
        ),
    ),
    "field_notes": (
        (
            "Field notes, {day} {month} {year}: {n_small} {birds} seen on the banks of the {river}.",
            "Walking the path from {town} to {town2}, I counted {n_mid} {birds} before noon.",
            "Observation near {town}, {month}: a pair of {birds} nesting under the {building}.",
        ),
        (
            "The {bird} had {colour} markings on the wing that I have not seen before.",
            "{name}, a local {occupation}, says they return every year in {month}.",
            "The water temperature was {temp} degrees and the weather {sky}.",
            "I made a sketch of the nest and left it with the {occupation2} in {town}.",
            "Last year only {n_small2} were recorded at the same spot.",
        ),
    ),
    "court": (
        (
            "At the hearing in {town} on the {day_nth} of {month} {year}, {name} was accused of taking {n_small} {animals}.",
            "Record of the {town} court, {year}: a dispute between {name} and {name2} over {a_item}.",
            "The magistrate of {town} heard the case of the missing {good} on {weekday}.",
        ),
        (
            "Witnesses said the {animals} had been seen near the {building} at dusk.",
            "{first} claimed to have paid {price} {currency} in {month} of {year2}.",
            "The {occupation} {name2} spoke for the defence.",
            "The court ordered a fine of {n_mid2} {currency} and the return of the property.",
            "The matter was adjourned until {month}, when a surveyor from {town2} could attend.",
        ),
    ),
    "market": (
        (
            "Prices at {town} market this {weekday}: {ingredient} at {price} {currency} the basket.",
            "The {month} fair in {town} drew {n_big} visitors and {n_mid} stalls.",
            "At the {town} market, {good} sold briskly on {weekday} while {ingredient} went cheap.",
        ),
        (
            "{ingredient2} rose to {price2} {currency}, the highest since {year}.",
            "{name} sold {n_small} {animals} before noon and left early.",
            "{a_occupation} from {town2} sold {colour} {material} bowls at {n_small2} {currency} each.",
            "Traders complained about the new toll on the road along the {river}.",
            "The next fair will be held on the {day_nth} of {month}.",
        ),
    ),
    "advert": (
        (
            "For sale: {a_item}, {colour}, in good order, {price} {currency} or best offer.",
            "Wanted: an honest {occupation} for steady work in {town}, starting in {month}.",
            "{surname} and Sons, {street}, {town}, repair every kind of {item} since {year}.",
        ),
        (
            "Apply in person to {name} after {hour} o'clock.",
            "Also {n_small} chairs of {material} and a set of {colour2} curtains.",
            "Wages of {price} {currency} a week, with lodging above the {building}.",
            "Deliveries to {town2} on {weekday}s at no extra charge.",
            "Ask for {first2} at number {n_mid2}.",
        ),
    ),
    "diary": (
        (
            "{weekday}, {day} {month} {year}. Woke at {hour} to {sky} over {town}.",
            "{day} {month} {year}. Spent the day in {town2} with {name2}.",
            "{weekday}. The {occupation} {name2} came by to look at the {item}.",
        ),
        (
            "Walked to the {building} and back, {n_small} miles in all.",
            "Read {n_mid2} pages of a book on {subject} and fell asleep by the fire.",
            "Paid {price} {currency} for {ingredient} and a new {colour} ribbon.",
            "{first2} has written again from {town2}; I must reply by {weekday2}.",
            "The {animals} got into the garden and ate the {ingredient2}.",
        ),
    ),
}


_ORDINAL_SUFFIXES = {21: "st", 22: "nd", 23: "rd"}  # days are drawn from 4..28


def _syllable_name(rng: random.Random, starts: tuple[str, ...], ends: tuple[str, ...]) -> str:
    return rng.choice(starts) + rng.choice(ends)


def _with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _particulars(rng: random.Random) -> dict[str, str | int]:
    """A fresh draw of every slot a template may use."""
    first, first2 = (_syllable_name(rng, _FIRST_STARTS, _FIRST_ENDS) for _ in range(2))
    surname, surname2 = (_syllable_name(rng, _SURNAME_STARTS, _SURNAME_ENDS) for _ in range(2))
    town = town2 = _syllable_name(rng, _TOWN_STARTS, _TOWN_ENDS)
    while town2 == town:
        town2 = _syllable_name(rng, _TOWN_STARTS, _TOWN_ENDS)
    item = rng.choice(_ITEMS)
    material = rng.choice(_MATERIALS)
    year = rng.randint(1760, 2015)
    ingredient, ingredient2 = rng.sample(_INGREDIENTS, 2)
    colour, colour2 = rng.sample(_COLOURS, 2)
    occupation, occupation2 = rng.sample(_OCCUPATIONS, 2)
    good, good2 = rng.sample(_GOODS, 2)
    direction, direction2 = rng.sample(_DIRECTIONS, 2)
    weekday, weekday2 = rng.sample(_WEEKDAYS, 2)
    team, team2 = rng.sample(_TEAM_NAMES, 2)
    building = rng.choice(_BUILDINGS)
    bird = rng.choice(_BIRDS)
    score_lost = rng.randint(0, 6)
    day = rng.randint(4, 28)
    return {
        "first": first,
        "first2": first2,
        "surname": surname,
        "surname2": surname2,
        "name": f"{first} {surname}",
        "name2": f"{first2} {surname2}",
        "initials": f"{first[0]}.{surname[0]}.",
        "town": town,
        "town2": town2,
        "river": rng.choice(_RIVER_NAMES),
        "region": rng.choice(_REGIONS),
        "street": f"{_syllable_name(rng, _SURNAME_STARTS, _SURNAME_ENDS)} {rng.choice(_STREET_KINDS)}",
        "occupation": occupation,
        "occupation2": occupation2,
        "trait": rng.choice(_TRAITS),
        "a_occupation": _with_article(occupation),
        "a_occupation2": _with_article(occupation2),
        "colour": colour,
        "colour2": colour2,
        "a_colour": _with_article(colour),
        "material": material,
        "a_material": _with_article(material),
        "item": item,
        "a_item": _with_article(f"{material} {item}"),
        "building": building,
        "a_building": _with_article(building),
        "animals": rng.choice(_ANIMALS),
        "bird": bird,
        "birds": bird + "s",
        "ingredient": ingredient,
        "ingredient2": ingredient2,
        "spice": rng.choice(_SPICES),
        "spice2": rng.choice(_SPICES),
        "dish": rng.choice(_DISHES),
        "good": good,
        "good2": good2,
        "currency": rng.choice(_CURRENCIES),
        "month": rng.choice(_MONTHS),
        "weekday": weekday,
        "weekday2": weekday2,
        "day": day,
        "day_nth": f"{day}{_ORDINAL_SUFFIXES.get(day, 'th')}",
        "hour": rng.randint(1, 12),
        "year": year,
        "year2": year + rng.randint(1, 30),
        "year3": year + rng.randint(31, 70),
        "age": rng.randint(19, 88),
        "n_small": rng.randint(2, 12),
        "n_small2": rng.randint(2, 12),
        "n_mid": rng.randint(13, 95),
        "n_mid2": rng.randint(13, 95),
        "score_won": score_lost + rng.randint(1, 5),
        "score_lost": score_lost,
        "n_big": rng.randint(100, 9800),
        "price": f"{rng.randint(1, 60)}.{rng.randint(0, 99):02d}",
        "price2": f"{rng.randint(1, 60)}.{rng.randint(0, 99):02d}",
        "temp": rng.randint(-6, 31),
        "temp2": rng.randint(-12, 14),
        "sky": rng.choice(_SKIES),
        "direction": direction,
        "direction2": direction2,
        "team": team,
        "team2": team2,
        "sport": rng.choice(_SPORTS),
        "ship": f"{rng.choice(_SHIP_PREFIXES)} {rng.choice(_SHIP_NOUNS)}",
        "instrument": rng.choice(_INSTRUMENTS),
        "subject": rng.choice(_SUBJECTS),
    }


def _capitalised(sentence: str) -> str:
    return sentence[0].upper() + sentence[1:]


GENRES = tuple(_GENRES)


def _draw_document(rng: random.Random, genres: Sequence[str] = GENRES, weights=None) -> tuple[str, str]:
    """One document and its genre (drawn from ``genres`` with ``weights``, uniformly by default),
    before the length and uniqueness checks."""
    genre = rng.choices(genres, weights)[0] if weights else rng.choice(genres)
    openings, bodies = _GENRES[genre]
    slots = _particulars(rng)
    sentences = [rng.choice(openings), *rng.sample(bodies, rng.randint(1, 3))]
    return genre, " ".join(_capitalised(sentence.format(**slots)) for sentence in sentences)


def _generate_labelled(
    n_documents: int, seed: int, genres: Sequence[str] = GENRES, weights=None
) -> list[tuple[str, str]]:
    """``n_documents`` distinct (genre, text) pairs, deterministic for ``seed``."""
    rng = random.Random(seed)
    seen: set[str] = set()
    documents: list[tuple[str, str]] = []
    while len(documents) < n_documents:
        genre, text = _draw_document(rng, genres, weights)
        if text in seen or not MIN_WORDS <= len(text.split()) <= MAX_WORDS:
            continue
        seen.add(text)
        documents.append((genre, text))
    return documents


def generate_genre_documents(genres: dict[str, float], n_documents: int, seed: int) -> list[str]:
    """``n_documents`` distinct documents whose genres are drawn with the given weights
    (e.g. ``{"biography": 3, "letter": 1}``), deterministic for ``seed``."""
    unknown = sorted(set(genres) - set(GENRES))
    if unknown:
        raise ValueError(f"unknown genre(s) {unknown}; known: {list(GENRES)}")
    return [text for _, text in _generate_labelled(n_documents, seed, list(genres), list(genres.values()))]


def generate_corpus(n_documents: int, seed: int) -> list[str]:
    """``n_documents`` distinct short English-like documents, deterministic for ``seed``."""
    return [text for _, text in _generate_labelled(n_documents, seed)]
