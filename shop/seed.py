"""The deterministic seed data: the same catalog and users for a given seed, in every topology."""

from __future__ import annotations

import random
from dataclasses import dataclass

ADJECTIVES = ("Red", "Swift", "Quiet", "Solid", "Bright", "Tiny", "Grand", "Smart", "Classic", "Eco")
NOUNS = ("Mug", "Lamp", "Chair", "Pen", "Kettle", "Backpack", "Clock", "Notebook", "Scarf", "Speaker")


@dataclass(frozen=True)
class SeedSpec:
    """How much to seed. Users are funded generously so that load runs are not refused for money."""

    seed: int = 1
    products: int = 1000
    users: int = 200
    stock: int = 100_000
    balance_cents: int = 1_000_000_000


def catalog(spec: SeedSpec) -> list[tuple[str, str, int, int]]:
    """``(sku, name, price_cents, stock)`` for products 1..n."""
    rng = random.Random(spec.seed)
    return [
        (f"SKU-{i:06d}", f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {i}", rng.randrange(199, 20_000), spec.stock)
        for i in range(1, spec.products + 1)
    ]


def users(spec: SeedSpec) -> list[tuple[str, str]]:
    """``(email, name)`` for users 1..n."""
    return [(f"user{i}@seed.example", f"Seed User {i}") for i in range(1, spec.users + 1)]
