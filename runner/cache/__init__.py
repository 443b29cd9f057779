"""The render cache: PNGs and decks kept between runs, keyed by everything that shapes them."""
