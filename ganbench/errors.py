"""Errors a user can cause; the CLI turns each into one line on stderr and an exit code."""


class GanbenchError(Exception):
    """A problem with the user's input (recipe, path, option): exit code 2, no traceback."""

    exit_code = 2


class RecipeError(GanbenchError):
    """A recipe key is unknown, mistyped, out of range or names something that does not exist."""


class DataError(GanbenchError):
    """A dataset is missing, unreadable or not in the expected format."""


class RunDirError(GanbenchError):
    """A run directory is missing, unreadable, or does not match the recipe given."""


class MetricError(GanbenchError):
    """A metric cannot be computed as asked (missing weights, too few samples, bad statistics)."""


class WorkFailed(Exception):
    """The work itself failed (a diverged run, a failed evaluation): exit code 1."""

    exit_code = 1


class Diverged(WorkFailed):
    """A loss became NaN or infinite; the run stopped with its last good checkpoint kept."""
