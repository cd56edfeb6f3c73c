"""The example shop: orders, and the background jobs around them."""
