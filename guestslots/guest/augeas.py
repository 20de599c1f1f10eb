"""Guest calls that edit configuration files through augeas, with libguestfs's
``aug_*`` names and meanings (paired with the agent's ``augeas`` area, which uses
libaugeas itself, with the appliance's lenses, inside the mounted guest
filesystem).  One augeas tree at a time: :meth:`AugeasCalls.aug_init` opens it on
the mounted filesystem, :meth:`AugeasCalls.aug_close` drops it.
"""

from __future__ import annotations

from .base import GuestCalls, serialised

#: aug_init flags, as augeas numbers them.
AUG_SAVE_BACKUP, AUG_SAVE_NEWFILE, AUG_NO_LOAD, AUG_SAVE_NOOP = 1, 2, 32, 64


class AugeasCalls(GuestCalls):
    """Editing the mounted guest filesystem's configuration files through augeas."""

    @serialised
    def aug_init(self, root: str, flags: int) -> None:
        """Open augeas on directory *root* of the mounted guest filesystem (``/``
        usually); its files are loaded unless *flags* has ``AUG_NO_LOAD`` (32).
        ``AUG_SAVE_BACKUP`` (1) and ``AUG_SAVE_NEWFILE`` (2) choose how
        :meth:`aug_save` writes.  The first aug_init of an appliance compiles the
        lenses: seconds under TCG."""
        self._call("aug_init", root=root, flags=int(flags), wait_for=600)

    @serialised
    def aug_load(self) -> None:
        """Load the files augeas's ``/augeas/load`` names into the tree, again."""
        self._call("aug_load")

    @serialised
    def aug_close(self) -> None:
        """Drop the augeas tree (unsaved changes are lost)."""
        self._call("aug_close")

    @serialised
    def aug_get(self, augpath: str) -> str:
        """The value of the one node *augpath* matches."""
        return str(self._call("aug_get", augpath=augpath))

    @serialised
    def aug_set(self, augpath: str, val: str) -> None:
        """Set the value of the one node *augpath* matches (made if need be)."""
        self._call("aug_set", augpath=augpath, val=val)

    @serialised
    def aug_setm(self, base: str, sub: str, val: str) -> int:
        """Set *sub* (relative to each node *base* matches) to *val*; how many."""
        return int(self._call("aug_setm", base=base, sub=sub, val=val))

    @serialised
    def aug_clear(self, augpath: str) -> None:
        """Set the value of the node *augpath* matches to none."""
        self._call("aug_clear", augpath=augpath)

    @serialised
    def aug_rm(self, augpath: str) -> int:
        """Remove every node *augpath* matches, and their children; how many."""
        return int(self._call("aug_rm", augpath=augpath))

    @serialised
    def aug_mv(self, src: str, dest: str) -> None:
        """Move the node *src* matches to *dest*."""
        self._call("aug_mv", src=src, dest=dest)

    @serialised
    def aug_insert(self, augpath: str, label: str, before: bool) -> None:
        """Insert a sibling node *label* before (or after) the node *augpath* matches."""
        self._call("aug_insert", augpath=augpath, label=label, before=bool(before))

    @serialised
    def aug_defvar(self, name: str, expr: str | None) -> int:
        """Define variable *name* as the nodes *expr* matches; how many."""
        return int(self._call("aug_defvar", name=name, expr=expr))

    @serialised
    def aug_label(self, augpath: str) -> str:
        """The label (name) of the node *augpath* matches."""
        return str(self._call("aug_label", augpath=augpath))

    @serialised
    def aug_match(self, augpath: str) -> list[str]:
        """The paths of every node *augpath* matches."""
        return [str(p) for p in self._call("aug_match", augpath=augpath)]

    @serialised
    def aug_ls(self, augpath: str) -> list[str]:
        """The paths of the nodes under *augpath*, sorted."""
        return [str(p) for p in self._call("aug_ls", augpath=augpath)]

    @serialised
    def aug_save(self) -> None:
        """Write the changed files back into the guest filesystem."""
        self._call("aug_save")
