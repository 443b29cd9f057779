from runner import signals

signals.hold()  # before the imports: a Ctrl-C from here on gets a report, never a traceback

from runner.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
