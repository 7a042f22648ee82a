"""Generates demo.sql, the bundled demo dataset (`semsql serve --demo`).

Deterministic (seeded), so the committed demo.sql can be regenerated exactly:
    python3 data/demo/generate.py > data/demo/demo.sql
"""
import random

rng = random.Random(20261126)

PRODUCTS = [
    ("Aurora 2 Wireless Headphones", "electronics"), ("Trailblazer 30L Hiking Backpack", "outdoors"),
    ("BrewMaster Drip Coffee Maker", "kitchen"), ("Lumen LED Desk Lamp", "home"),
    ("Quickcharge 20W USB-C Charger", "electronics"), ("Cloudstep Running Shoes", "apparel"),
    ("Ironclad Cast Iron Skillet", "kitchen"), ("Nimbus Memory Foam Pillow", "home"),
    ("Pocket Pro Bluetooth Speaker", "electronics"), ("Everdry Rain Jacket", "apparel"),
    ("Summit Trekking Poles", "outdoors"), ("Crisp Air Fryer 5qt", "kitchen"),
]

PRAISE = [
    "The sound is rich and the bass is punchy without being muddy.",
    "Build quality feels premium and nothing rattles.",
    "Setup took less than five minutes and the instructions were clear.",
    "It does exactly what it promises and does it well.",
    "After three months of daily use it still works like new.",
    "Comfortable enough to wear all day without noticing it.",
    "Great value for the price, I would buy it again.",
    "The battery easily lasts a full week of commuting.",
    "My whole family uses it every morning now.",
    "Customer support answered my question within an hour.",
]
COMPLAINTS = {
    "shipping": [
        "The package arrived two weeks late and the box was crushed.",
        "Delivery took far longer than promised and tracking never updated.",
        "It was shipped to the wrong address and I had to chase the courier for days.",
        "The parcel showed up late, soaked from the rain, with no apology.",
    ],
    "quality": [
        "The stitching came apart after the second week.",
        "It stopped charging after a month and the button feels flimsy.",
        "The coating started peeling off almost immediately.",
        "One of the parts was cracked right out of the box.",
    ],
    "price": [
        "Way too expensive for what you actually get.",
        "I found the same thing for half the price elsewhere.",
        "The accessories you need cost extra, which feels like a trick.",
    ],
    "support": [
        "Customer service kept me on hold for an hour and then hung up.",
        "They refused a refund even though the item was defective.",
        "Support replied with a canned answer that ignored my question.",
    ],
    "usability": [
        "The app is confusing and keeps logging me out.",
        "The controls are tiny and hard to press with gloves on.",
        "Cleaning it takes longer than using it.",
    ],
}
NEUTRAL = [
    "It is fine, nothing special.",
    "Does the job, although the color is a bit different from the photos.",
    "Works as described; the manual could be better.",
    "Decent overall but I expected a little more.",
]


def review_text(stars):
    if stars >= 4:
        parts = rng.sample(PRAISE, 2 if stars == 5 else 1)
        if stars == 4 and rng.random() < 0.5:
            parts.append(rng.choice(NEUTRAL))
        return " ".join(parts)
    if stars == 3:
        parts = [rng.choice(NEUTRAL)]
        if rng.random() < 0.6:
            parts.append(rng.choice(COMPLAINTS[rng.choice(list(COMPLAINTS))]))
        return " ".join(parts)
    topics = rng.sample(list(COMPLAINTS), 2 if stars == 1 else 1)
    return " ".join(rng.choice(COMPLAINTS[t]) for t in topics)


HEROES = [
    "a retired lighthouse keeper", "a young marine biologist", "an exiled chess prodigy",
    "a disgraced detective", "two estranged sisters", "a baker with a secret past",
    "a rookie astronaut", "a small-town mayor", "an aging jazz pianist", "a teenage hacker",
    "a widowed farmer", "a street magician",
]
GOALS = [
    "must find a missing child before the winter storm hits",
    "tries to win back the family vineyard from a ruthless developer",
    "uncovers a smuggling ring hidden inside a children's museum",
    "is stranded on a research station after contact with Earth goes silent",
    "enters a cross-country cooking competition to save a failing diner",
    "agrees to guide a stranger across the desert for a price",
    "discovers that the town's beloved founder was a fraud",
    "trains an unlikely team for the national rowing championship",
    "wakes up every morning one day further in the past",
    "has to testify against the friend who once saved their life",
]
TWISTS = [
    "Along the way, an old rival turns out to be the only ally left.",
    "The truth, when it comes out, splits the town in two.",
    "What begins as a job becomes a reckoning with grief.",
    "Nobody, it seems, is telling the whole story.",
    "A quiet romance grows in the middle of the chaos.",
    "Every choice costs more than the last.",
]
GENRES = {
    0: "thriller", 1: "drama", 2: "mystery", 3: "science fiction", 4: "comedy",
    5: "western", 6: "drama", 7: "sports", 8: "science fiction", 9: "drama",
}
TITLE_A = ["The Last", "Silent", "Northern", "Broken", "Golden", "Midnight", "Hidden", "Distant",
           "Burning", "Paper"]
TITLE_B = ["Harbor", "Orchard", "Signal", "Kitchen", "Frontier", "Ledger", "Tide", "Season",
           "Crossing", "Testament"]


def sql(text):
    return "'" + text.replace("'", "''") + "'"


def main():
    out = ["-- Generated by data/demo/generate.py; loaded by `semsql serve --demo`."]
    out.append("CREATE TABLE reviews (id INT NOT NULL, product TEXT NOT NULL, category TEXT NOT NULL, "
               "stars INT NOT NULL, review_date DATE NOT NULL, body TEXT NOT NULL);")
    rows = []
    for i in range(1, 301):
        product, category = rng.choice(PRODUCTS)
        stars = rng.choices([1, 2, 3, 4, 5], weights=[12, 13, 15, 30, 30])[0]
        day = f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        rows.append(f"({i}, {sql(product)}, {sql(category)}, {stars}, DATE '{day}', {sql(review_text(stars))})")
    for start in range(0, len(rows), 50):
        out.append("INSERT INTO reviews VALUES\n  " + ",\n  ".join(rows[start:start + 50]) + ";")

    out.append("CREATE TABLE movies (id INT NOT NULL, title TEXT NOT NULL, year INT NOT NULL, "
               "genre TEXT NOT NULL, rating DOUBLE NOT NULL, plot TEXT NOT NULL);")
    rows, titles = [], set()
    for i in range(1, 101):
        while True:
            title = f"{rng.choice(TITLE_A)} {rng.choice(TITLE_B)}"
            if title not in titles:
                titles.add(title)
                break
        goal_index = rng.randrange(len(GOALS))
        hero = rng.choice(HEROES)
        plot = f"{hero[0].upper()}{hero[1:]} {GOALS[goal_index]}. {rng.choice(TWISTS)}"
        rating = round(rng.uniform(4.5, 9.2), 1)
        rows.append(f"({i}, {sql(title)}, {rng.randint(1975, 2025)}, {sql(GENRES[goal_index])}, {rating}, {sql(plot)})")
    out.append("INSERT INTO movies VALUES\n  " + ",\n  ".join(rows) + ";")
    print("\n".join(out))


main()
