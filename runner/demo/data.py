"""A deterministic synthetic BNPL warehouse in SQLite: merchants, customers, orders.

Fixed seed, so every start gives the same rows. Shapes a reviewer expects: a November/
December peak and a summer dip, year-on-year growth that differs by merchant, merchant
sizes spanning two orders of magnitude, a user mix drifting from new to returning, and one
merchant that stopped trading before the default window.
"""

from __future__ import annotations

import random
import sqlite3
import string

SEED = 20240601
FIRST_MONTH = (2023, 1)
LAST_MONTH = (2025, 12)
MERCHANT_COUNT = 24
DORMANT_INDEX = MERCHANT_COUNT - 1  # trades in 2023 only: no orders in the default window

SEASON = (0.80, 0.75, 0.90, 0.95, 1.00, 0.95, 0.85, 0.80, 1.00, 1.05, 1.45, 1.60)
AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55+")
GENDERS = ("female", "male", "undisclosed")
CARD_TYPES = ("credit", "debit", "prepaid")
USER_TYPES = ("network", "returning", "new")

_NAMES = (
    "Bottega Verde", "Casa Lume", "Moda Rapida", "Ottica Sole", "Tech Nido", "Giardino Blu",
    "Scarpe Vive", "Pelle Fina", "Cucina Viva", "Sport Alto", "Gioie d'Oro", "Libri Amici",
    "Bimbi Felici", "Arredo Nord", "Vino Vero", "Bici Bella", "Profumi Rari", "Tessuti Sud",
    "Orologi Neri", "Foto Fresca", "Musica Mia", "Pet Paradiso", "Viaggi Lievi", "Vecchia Merceria",
)
_CATEGORIES = {  # typical basket in EUR
    "fashion": 95.0, "electronics": 310.0, "beauty": 60.0, "home": 220.0, "sport": 140.0, "jewellery": 420.0,
}

SCHEMA = """
CREATE TABLE merchants (id INTEGER PRIMARY KEY, token TEXT UNIQUE NOT NULL, name TEXT NOT NULL,
                        category TEXT NOT NULL);
CREATE TABLE customers (id INTEGER PRIMARY KEY, age INTEGER NOT NULL, gender TEXT NOT NULL,
                        card_type TEXT NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, merchant_id INTEGER NOT NULL, customer_id INTEGER NOT NULL,
                     month TEXT NOT NULL, amount REAL NOT NULL, product_type TEXT NOT NULL,
                     user_type TEXT NOT NULL);
"""


def _token(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(12))


def _months() -> list[tuple[int, int]]:
    out = []
    year, month = FIRST_MONTH
    while (year, month) <= LAST_MONTH:
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def build_database(scale: float = 1.0, merchants: int = MERCHANT_COUNT) -> sqlite3.Connection:
    """Create the in-memory warehouse; `scale` multiplies order volumes (tests may shrink it).

    Beyond the first MERCHANT_COUNT, extra merchants (for scale runs) are drawn after them from
    the same generator, so the first ones are the same whatever the count.
    """
    rng = random.Random(SEED)
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.executescript(SCHEMA)

    customers = []
    for cid in range(1, 6001):
        age = max(18, min(80, int(rng.gauss(36, 11))))
        gender = rng.choices(GENDERS, weights=(58, 39, 3))[0]
        card = rng.choices(CARD_TYPES, weights=(55, 38, 7))[0]
        customers.append((cid, age, gender, card))
    db.executemany("INSERT INTO customers VALUES (?, ?, ?, ?)", customers)

    orders = []
    months = _months()
    for index in range(max(merchants, MERCHANT_COUNT)):
        category = rng.choice(list(_CATEGORIES))
        name = _NAMES[index % len(_NAMES)] + ("" if index < len(_NAMES) else f" {index // len(_NAMES) + 1}")
        db.execute("INSERT INTO merchants VALUES (?, ?, ?, ?)", (index + 1, _token(rng), name, category))
        base = rng.lognormvariate(3.6, 0.9) * scale  # orders per month in Jan 2023
        growth = rng.uniform(0.05, 0.65)  # per year
        basket = _CATEGORIES[category] * rng.uniform(0.7, 1.3)
        pay4_share = rng.uniform(0.25, 0.6)
        # Each merchant draws from its own slice of the customer base.
        pool = rng.sample(range(1, len(customers) + 1), k=rng.randint(300, 2500))
        for m, (year, month) in enumerate(months):
            if index == DORMANT_INDEX and year > 2023:
                break
            expected = base * SEASON[month - 1] * (1 + growth) ** (m / 12)
            count = max(0, int(rng.gauss(expected, expected ** 0.5 + 1)))
            new_share = max(0.12, 0.45 - 0.008 * m)
            for _ in range(count):
                product = "pay_in_4" if rng.random() < pay4_share else "pay_in_3"
                # Pay in 4 carries larger baskets, as it does in the real book.
                amount = rng.lognormvariate(0, 0.45) * basket * (1.25 if product == "pay_in_4" else 1.0)
                user = rng.choices(USER_TYPES, weights=(0.2, 0.8 - new_share, new_share))[0]
                orders.append((index + 1, rng.choice(pool), f"{year:04d}-{month:02d}", round(amount, 2),
                               product, user))
    db.executemany(
        "INSERT INTO orders (merchant_id, customer_id, month, amount, product_type, user_type) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        orders,
    )
    db.execute("CREATE INDEX orders_by_merchant_month ON orders (merchant_id, month)")
    db.commit()
    return db
