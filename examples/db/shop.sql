-- A small shop: the example database of the `db` plugin.
-- Rebuild shop.sqlite from it with:
--   rm -f shop.sqlite && python3 -c "import sqlite3; sqlite3.connect('shop.sqlite').executescript(open('shop.sql').read())"
PRAGMA foreign_keys = ON;

CREATE TABLE customers (
  id         INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  email      TEXT NOT NULL UNIQUE,
  country    TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE products (
  id          INTEGER PRIMARY KEY,
  sku         TEXT NOT NULL UNIQUE,
  name        TEXT NOT NULL,
  price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
  stock       INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE orders (
  id          INTEGER PRIMARY KEY,
  customer_id INTEGER NOT NULL REFERENCES customers(id),
  status      TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'shipped', 'cancelled')),
  placed_at   TEXT NOT NULL
);
CREATE INDEX orders_by_customer ON orders(customer_id);
CREATE INDEX orders_by_status_date ON orders(status, placed_at);

CREATE TABLE order_items (
  order_id    INTEGER NOT NULL REFERENCES orders(id),
  product_id  INTEGER NOT NULL REFERENCES products(id),
  quantity    INTEGER NOT NULL CHECK (quantity > 0),
  price_cents INTEGER NOT NULL,
  PRIMARY KEY (order_id, product_id)
);

CREATE VIEW revenue_by_country AS
  SELECT c.country, sum(i.quantity * i.price_cents) AS revenue_cents, count(DISTINCT o.id) AS orders
  FROM orders o JOIN customers c ON c.id = o.customer_id JOIN order_items i ON i.order_id = o.id
  WHERE o.status <> 'cancelled'
  GROUP BY c.country;

INSERT INTO customers (id, name, email, country, created_at) VALUES
  (1, 'Ada Lovelace', 'ada@example.org', 'GB', '2026-01-04'),
  (2, 'Grace Hopper', 'grace@example.org', 'US', '2026-01-09'),
  (3, 'Katherine Johnson', 'katherine@example.org', 'US', '2026-02-11'),
  (4, 'Hedy Lamarr', 'hedy@example.org', 'AT', '2026-02-20'),
  (5, 'Margaret Hamilton', 'margaret@example.org', 'US', '2026-03-02'),
  (6, 'Radia Perlman', 'radia@example.org', 'US', '2026-03-15'),
  (7, 'Sophie Wilson', 'sophie@example.org', 'GB', '2026-04-01'),
  (8, 'Frances Allen', 'frances@example.org', 'US', '2026-04-18'),
  (9, 'Barbara Liskov', 'barbara@example.org', 'US', '2026-05-05'),
  (10, 'Annie Easley', 'annie@example.org', 'US', '2026-05-23'),
  (11, 'Mary Somerville', 'mary@example.org', 'GB', '2026-06-07'),
  (12, 'Émilie du Châtelet', 'emilie@example.org', 'FR', '2026-06-30');

INSERT INTO products (id, sku, name, price_cents, stock) VALUES
  (1, 'KB-01', 'Mechanical keyboard', 8900, 40),
  (2, 'MS-01', 'Wireless mouse', 2900, 120),
  (3, 'MN-27', '27" monitor', 27900, 15),
  (4, 'DK-01', 'USB-C dock', 13900, 30),
  (5, 'HS-01', 'Headset', 5900, 60),
  (6, 'CB-2M', 'USB-C cable, 2 m', 1200, 500),
  (7, 'LS-01', 'Laptop stand', 3900, 75),
  (8, 'WC-HD', 'HD webcam', 6900, 25);

-- 120 orders over 2026, each of one to three products: generated, so the
-- file stays short and the numbers stay the same on every build.
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120)
INSERT INTO orders (id, customer_id, status, placed_at)
SELECT i, (i * 7) % 12 + 1,
       CASE WHEN i % 11 = 0 THEN 'cancelled' WHEN i > 110 THEN 'pending' WHEN i > 95 THEN 'paid' ELSE 'shipped' END,
       date('2026-01-01', '+' || (i * 3) || ' days')
FROM n;

WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 120)
INSERT INTO order_items (order_id, product_id, quantity, price_cents)
SELECT n.i, p.id, (n.i + ks.k) % 3 + 1, p.price_cents
FROM n
JOIN (SELECT 1 AS k UNION ALL SELECT 2 UNION ALL SELECT 3) AS ks ON ks.k <= n.i % 3 + 1
JOIN products p ON p.id = (n.i * 5 + ks.k * 3) % 8 + 1;
