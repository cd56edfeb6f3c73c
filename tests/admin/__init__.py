"""Django admin: the pages, actions and dashboard, and a real browser driving them."""
