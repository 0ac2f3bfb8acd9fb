"""A narrow error hierarchy; the CLI turns each into one line and a non-zero exit."""


class ShmkitError(Exception):
    """Base of every error the library raises on purpose."""

    def __reduce__(self):
        # pickled whole (message and attributes) for the trip back from a sandboxed peer, whatever
        # arguments the subclass's __init__ takes
        return _rebuild, (type(self), str(self), self.__dict__)


def _rebuild(cls, msg, attrs):
    err = Exception.__new__(cls)
    Exception.__init__(err, msg)
    err.__dict__.update(attrs)
    return err


class BadInput(ShmkitError):
    """An argument the user gave cannot be used (size, count, name)."""


class LimitExceeded(BadInput):
    """A size past shmmax, shmall, /dev/shm space or available memory."""


class NotFound(ShmkitError):
    """A named library, object or file does not exist."""


class NotELF(ShmkitError):
    """A file is not an ELF object, or is truncated."""


class NoSuchProcess(ShmkitError):
    """A process vanished (or never existed) while we read its /proc entries."""

    def __init__(self, pid, msg=None):
        self.pid = pid
        super().__init__(msg or f"process {pid} does not exist (it may have exited)")


class ZombieProcess(NoSuchProcess):
    """The process has exited and waits for its parent: it has no address space to read."""

    def __init__(self, pid, msg=None):
        super().__init__(pid, msg or f"process {pid} is a zombie: it has no address space")


class KernelThread(NoSuchProcess):
    """A kernel thread: a process with no address space of its own."""

    def __init__(self, pid, msg=None):
        super().__init__(pid, msg or f"process {pid} is a kernel thread: it has no address space")


class AccessDenied(ShmkitError):
    """The kernel refused to let us read or attach something."""

    def __init__(self, what, msg=None):
        self.what = what
        super().__init__(msg or f"permission denied: {what}")


class PeerFailed(ShmkitError):
    """A peer process died, stopped answering, or answered with an error."""

    def __init__(self, msg, pid=None, what=None):
        self.pid, self.what = pid, what
        super().__init__(msg)
