"""Business-review decks: paragraphs from data, PDF and PPTX documents."""
