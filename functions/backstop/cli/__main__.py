"""`python -m backstop.cli ...`, as a user or cron would run it."""

from backstop.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
