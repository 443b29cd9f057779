"""Rendering charts and building decks: render backends behind one protocol (supervisor.py), chosen in
backends.py, each running `task.run_task` where its workers are."""
