"""Business-review decks: the slides of a merchant's deck, and each format's document made from them."""
