"""The tamper-evident log: an RFC 9162 Merkle tree over the ledger's entries, and signed checkpoints.

Each transfer and each hold resolution is one leaf (its canonical JSON, `ledger.leaf_bytes`).
Hashing is RFC 9162 section 2.1: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right).
The store keeps the tree's frontier (the roots of its perfect subtrees), so appending is O(log n) and
the root is always at hand. A checkpoint signs (origin, size, root, time) with Ed25519 and leaves the
database as a file line and a log line, so rewriting history in the database shows.

Proofs follow RFC 9162 section 2.1.3 (inclusion) and 2.1.4 (consistency), with their verification.

Its size is RFC 9162's: the tree, both proofs and their checks, and the signed checkpoint format,
which are read together when checking one against another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

ORIGIN = "creditchat-ledger/v1"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


# The frontier: roots of the perfect subtrees, largest (leftmost) first -------------------------


def frontier_push(frontier: list[bytes], size: int, leaf: bytes) -> None:
    """Append `leaf` to a tree of `size` leaves, updating its frontier in place."""
    frontier.append(leaf)
    while size & 1:
        right = frontier.pop()
        frontier[-1] = node_hash(frontier[-1], right)
        size >>= 1


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """The tree root: subtree roots folded from the smallest (rightmost) to the largest."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for left in reversed(frontier[:-1]):
        root = node_hash(left, root)
    return root


def join_frontier(
    frontier: Sequence[bytes], size: int, subtrees: Sequence[tuple[int, bytes]]
) -> list[bytes]:
    """The frontier of a tree of `size` leaves carried on by `subtrees`, the complete subtrees
    (level, hash) of the leaves that follow, left to right (as `replay.Walk.subtrees` gives them)."""
    joined = list(frontier)
    for level, node in subtrees:
        joined.append(node)
        carry = size >> level
        while carry & 1:
            right = joined.pop()
            joined[-1] = node_hash(joined[-1], right)
            carry >>= 1
        size += 1 << level
    return joined


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 over leaf hashes."""
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        frontier_push(frontier, size, leaf)
    return frontier_root(frontier)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(_subtree_root(leaves[:k]), _subtree_root(leaves[k:]))


# Proofs -----------------------------------------------------------------------------------------


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]): the audit path of leaf `index` in the tree of `leaves`."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"leaf {index} is not in a tree of size {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), _subtree_root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), _subtree_root(leaves[:k])]


class Forest:
    """A tree of `size` leaves read from storage only where needed: for an audit path, the roots of
    large subtrees come from the roots of aligned chunks of `chunk` leaves (kept in `known`: the
    log only grows, so a complete chunk's root never changes) and leaves are read for one or two
    chunks. A receipt costs a few chunk reads instead of reading the whole log."""

    def __init__(
        self,
        size: int,
        read_leaves: Callable[[int, int], list[bytes]],
        known: dict[int, bytes],
        chunk: int = 1024,
    ) -> None:
        if chunk < 1 or chunk & (chunk - 1):
            raise ValueError("a chunk is a power of two leaves")
        self.size, self.read_leaves, self.known, self.chunk = size, read_leaves, known, chunk
        self._leaves: dict[int, list[bytes]] = {}

    def inclusion_proof(self, index: int) -> list[bytes]:
        """PATH(m, D[n]), as `inclusion_proof` computes it from all the leaves."""
        if not 0 <= index < self.size:
            raise ValueError(f"leaf {index} is not in a tree of size {self.size}")
        path: list[bytes] = []  # from the top down
        lo, hi = 0, self.size
        while hi - lo > 1:
            k = _split(hi - lo)
            if index < lo + k:
                path.append(self.root(lo + k, hi))
                hi = lo + k
            else:
                path.append(self.root(lo, lo + k))
                lo += k
        return path[::-1]

    def root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range the RFC's recursion visits (`start` is a multiple of a
        power of two at least `end - start`)."""
        n, c = end - start, self.chunk
        if start % c == 0 and n % c == 0 and n & (n - 1) == 0:
            return _subtree_root([self._chunk_root(i) for i in range(start // c, end // c)])
        if n <= c:
            first = self._chunk_leaves(start // c)
            offset = start // c * c
            return _subtree_root(first[start - offset : end - offset])
        k = _split(n)
        return node_hash(self.root(start, start + k), self.root(start + k, end))

    def _chunk_root(self, i: int) -> bytes:
        known = self.known.get(i)
        if known is None:
            leaves = self._chunk_leaves(i)
            known = self.known.get(i)
            if known is None:
                raise ValueError(f"the log has {len(leaves)} of the entries of its chunk {i}")
        return known

    def _chunk_leaves(self, i: int) -> list[bytes]:
        """A chunk's leaves (read once a receipt); a complete chunk's root is kept as it is read."""
        leaves = self._leaves.get(i)
        if leaves is None:
            start = i * self.chunk
            leaves = self._leaves[i] = self.read_leaves(start, min(start + self.chunk, self.size))
            if len(leaves) == self.chunk and i not in self.known:
                self.known[i] = _subtree_root(leaves)
        return leaves


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does `proof` show `leaf` (a leaf hash) at `index` under `expected_root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == expected_root


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PROOF(m, D[n]): shows the tree of `old_size` leaves is a prefix of the tree of `leaves`."""
    n = len(leaves)
    if not 0 < old_size <= n:
        raise ValueError(f"no consistency proof from size {old_size} to {n}")
    return _subproof(old_size, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_subtree_root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), _subtree_root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), _subtree_root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (`old_size`, `old_root`) a prefix of (`new_size`, `new_root`)?"""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root starts the path
        path.insert(0, old_root)
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


# Signed checkpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: bytes
    timestamp_us: int
    key_id: str
    signature: bytes
    origin: str = ORIGIN

    def body(self) -> bytes:
        return checkpoint_body(self.origin, self.size, self.root, self.timestamp_us)

    def to_json(self) -> str:
        return json.dumps(
            {
                "origin": self.origin,
                "size": self.size,
                "root": self.root.hex(),
                "timestamp_us": self.timestamp_us,
                "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode(),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        return cls(
            size=int(data["size"]),
            root=bytes.fromhex(data["root"]),
            timestamp_us=int(data["timestamp_us"]),
            key_id=str(data["key_id"]),
            signature=base64.b64decode(data["signature"]),
            origin=str(data["origin"]),
        )


def checkpoint_body(origin: str, size: int, tree_root: bytes, timestamp_us: int) -> bytes:
    return f"{origin}\n{size}\n{base64.b64encode(tree_root).decode()}\n{timestamp_us}\n".encode()


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def sign(
    key: Ed25519PrivateKey, size: int, tree_root: bytes, timestamp_us: int, origin: str = ORIGIN
) -> Checkpoint:
    body = checkpoint_body(origin, size, tree_root, timestamp_us)
    return Checkpoint(
        size, tree_root, timestamp_us, key_id(key.public_key()), key.sign(body), origin
    )


def origin_of(ledger_id: str) -> str:
    """The origin line of a ledger's checkpoints: it names the ledger, so a checkpoint (and a
    line of the file outside the database) says which ledger it belongs to, under its signature."""
    return f"{ORIGIN}/{ledger_id}"


def signature_ok(checkpoint: Checkpoint, public: Ed25519PublicKey) -> bool:
    if checkpoint.key_id != key_id(public):
        return False
    try:
        public.verify(checkpoint.signature, checkpoint.body())
    except InvalidSignature:
        return False
    return True


def load_or_create_key(path: Path, seed_b64: str | None = None) -> Ed25519PrivateKey:
    """The signing key: from a configured seed, else from `path`, created there on first use."""
    if seed_b64:
        return Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))
    if not path.exists():
        raw = Ed25519PrivateKey.generate().private_bytes(
            Encoding.Raw, PrivateFormat.Raw, NoEncryption()
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(base64.b64encode(raw).decode() + "\n")
    return Ed25519PrivateKey.from_private_bytes(base64.b64decode(path.read_text().strip()))


def public_key_b64(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key as `public_key_b64` writes it (and `python -m credits checkpoint` prints it);
    ValueError when it is not one."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an Ed25519 public key in base64: {text.strip()[:60]!r}") from exc


def pin_public_key(path: Path, public: Ed25519PublicKey) -> tuple[Ed25519PublicKey, bool]:
    """The ledger's pinned public key, recorded in `path` (outside the database) the first time,
    and whether it was recorded just now. Checkpoints signed by any other key do not verify."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass  # another process pinned it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(public_key_b64(public) + "\n")
            return public, True
    return parse_public_key(path.read_text()), False
