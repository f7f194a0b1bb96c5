"""Errors raised while talking to models. `ui/errors.py` turns them into chat messages and
`api/errors.py` into HTTP answers."""


class AgentError(Exception):
    """Root of every error the agents package raises."""


class CatalogError(AgentError):
    """The model catalogue is malformed or names something that does not exist."""


class ModelNotAvailable(AgentError):
    """The chosen model is unknown, or its provider is not configured."""

    def __init__(self, message: str, pickable: bool = True) -> None:
        super().__init__(message)
        self.pickable = pickable  # False: no model to pick would do (nothing able is configured)


class ModelUnreachable(AgentError):
    """The model's server could not be reached or did not answer in time."""


class ModelFailed(AgentError):
    """The model's server answered with an error."""
