"""Seed data: the same catalog and users for a given seed in every topology, loaded through the contexts' rules."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from monolith.app import SCHEMAS
from monolith.app import seed as seed_monolith
from shop.db import UnitOfWork
from shop.inventory import Inventory
from shop.payments import Payments
from shop.seed import SeedSpec, catalog, users
from shop.users import Users, check_name, normalize_email

OpenDb = Callable[..., sqlite3.Connection]
SMALL = SeedSpec(seed=3, products=40, users=5, stock=50, balance_cents=10_000)


def test_same_seed_gives_the_same_catalog() -> None:
    assert catalog(SMALL) == catalog(SeedSpec(seed=3, products=40, users=5, stock=50, balance_cents=10_000))


def test_another_seed_gives_another_catalog_with_the_same_skus() -> None:
    other = catalog(SeedSpec(seed=4, products=40, stock=50))

    assert other != catalog(SMALL)
    assert [sku for sku, *_ in other] == [sku for sku, *_ in catalog(SMALL)]


def test_catalog_shape() -> None:
    products = catalog(SMALL)

    assert len(products) == SMALL.products
    assert [sku for sku, *_ in products] == [f"SKU-{i:06d}" for i in range(1, SMALL.products + 1)]
    for i, (_, name, price, stock) in enumerate(products, start=1):
        assert name.endswith(f" {i}")
        assert 199 <= price < 20_000
        assert stock == SMALL.stock
    assert len({price for _, _, price, _ in products}) > 1


def test_seed_users_are_valid_and_distinct() -> None:
    people = users(SMALL)

    assert people == users(SMALL)
    assert len({email for email, _ in people}) == SMALL.users
    for email, name in people:
        assert normalize_email(email) == email
        assert check_name(name) == name


def test_seeding_through_the_contexts_gives_ids_from_one(open_db: OpenDb) -> None:
    conn = open_db(*SCHEMAS)

    with UnitOfWork(conn) as uow:
        Inventory(conn).seed(catalog(SMALL))
        Users(conn).seed(users(SMALL))
        Payments(conn).seed(range(1, SMALL.users + 1), SMALL.balance_cents)
        uow.commit()

    sku, name, price, stock = catalog(SMALL)[9]
    product = Inventory(conn).get(10)
    assert (product.sku, product.name, product.price_cents, product.stock) == (sku, name, price, stock)
    assert Users(conn).get(SMALL.users).email == users(SMALL)[-1][0]
    assert Payments(conn).balance(SMALL.users) == SMALL.balance_cents


def test_the_monolith_seeds_once(open_db: OpenDb) -> None:
    conn = open_db(*SCHEMAS)

    seed_monolith(conn, SMALL)
    seed_monolith(conn, SMALL)  # a restarted monolith keeps its data

    assert Inventory(conn).page(1, 0)[1] == SMALL.products
    assert Users(conn).count() == SMALL.users
    assert Payments(conn).balance(1) == SMALL.balance_cents
    (deposits,) = conn.execute("SELECT COUNT(*) FROM deposits").fetchone()
    assert deposits == SMALL.users
