"""The Ctrl-C summary of a run with more failures than it lists names the ``runs show`` command that lists
them all: by the run's ``--ledger`` (a PostgreSQL DSN never shown: it may hold a password), else by its
output folder."""

from __future__ import annotations

from adcreative_async.cli._runs import DSN_SHOWN, failures_command

SECRET_DSN = "postgresql://me:s3cret@db.example/renders#cutouts"


def test_a_postgresql_run_is_listed_by_its_dsn_never_shown() -> None:
    for argv in (
        ["remove-bg", "photos/", "-o", "out/", "--ledger", SECRET_DSN],
        ["remove-bg", "photos/", "--output=out/", f"--ledger={SECRET_DSN}"],
    ):
        command = failures_command(argv)
        assert command.startswith(f"adcreative runs show --ledger {DSN_SHOWN} --state failed")
        assert "s3cret" not in command
        assert "db.example" not in command


def test_a_ledger_file_or_the_output_folder_names_the_run() -> None:
    assert failures_command(["remove-bg", "in/", "-o", "out dir/", "--ledger", "runs/a.sqlite"]) == (
        "adcreative runs show --ledger runs/a.sqlite --state failed"
    )
    assert (
        failures_command(["remove-bg", "in/", "-o", "out dir/"])
        == "adcreative runs show 'out dir/' --state failed"
    )
    assert (
        failures_command(["remove-bg", "in/", "--output=out/"]) == "adcreative runs show out/ --state failed"
    )
