"""The demo shop: a monolith's tables (products, prices, inventory, orders, payments) to liberate."""
