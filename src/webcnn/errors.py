"""One error type for everything a user can get wrong: the message names the problem and the fix."""


class WebcnnError(Exception):
    """A problem with the user's model, bundle, input or environment (not a bug in webcnn)."""


class UnsupportedError(WebcnnError):
    """The model uses an op or attribute that webcnn cannot lower."""

    def __init__(self, node, detail: str, supported: str = ""):
        where = f"node '{node.name}' (op {node.op})" if node is not None else "model"
        message = f"unsupported {where}: {detail}"
        if supported:
            message += f". Supported: {supported}"
        super().__init__(message)
