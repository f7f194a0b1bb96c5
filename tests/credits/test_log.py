"""The Merkle log against RFC 6962/9162 reference vectors, and proofs for every shape of tree."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from credits import log

ENTRIES = [bytes.fromhex(h) for h in (
    "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
)]  # fmt: skip
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [log.leaf_hash(e) for e in ENTRIES]
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip
CONSISTENCY = [
    (2, 8, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]  # fmt: skip


def test_roots_match_the_reference_for_every_size() -> None:
    for size, expected in enumerate(ROOTS):
        assert log.root(LEAVES[:size]).hex() == expected


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_proofs_match_the_reference(index: int, size: int, path: list[str]) -> None:
    proof = log.inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == path
    assert log.verify_inclusion(LEAVES[index], index, size, proof, bytes.fromhex(ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_proofs_match_the_reference(old: int, new: int, path: list[str]) -> None:
    proof = log.consistency_proof(old, LEAVES[:new])
    assert [p.hex() for p in proof] == path
    old_root, new_root = bytes.fromhex(ROOTS[old]), bytes.fromhex(ROOTS[new])
    assert log.verify_consistency(old, new, old_root, new_root, proof)
    assert not log.verify_consistency(old, new, new_root, old_root, proof)


MANY = [log.leaf_hash(i.to_bytes(2, "big")) for i in range(41)]


def test_every_inclusion_proof_verifies_and_wrong_ones_do_not() -> None:
    for size in range(1, len(MANY)):
        tree_root = log.root(MANY[:size])
        for index in range(size):
            proof = log.inclusion_proof(index, MANY[:size])
            assert log.verify_inclusion(MANY[index], index, size, proof, tree_root)
            bigger_root = log.root(MANY[: size + 1])  # the size is bound by the signed root
            assert not log.verify_inclusion(MANY[index], index, size + 1, proof, bigger_root)
            other = MANY[(index + 1) % size] if size > 1 else MANY[-1]
            assert not log.verify_inclusion(other, index, size, proof, tree_root)
            if proof:
                bad = [bytes(32), *proof[1:]]
                assert not log.verify_inclusion(MANY[index], index, size, bad, tree_root)


def test_every_consistency_proof_verifies_and_wrong_ones_do_not() -> None:
    for new in range(1, 24):
        for old in range(1, new + 1):
            proof = log.consistency_proof(old, MANY[:new])
            r_old, r_new = log.root(MANY[:old]), log.root(MANY[:new])
            assert log.verify_consistency(old, new, r_old, r_new, proof)
            assert not log.verify_consistency(old, new, r_old, log.root(MANY[1 : new + 1]), proof)


@given(st.lists(st.binary(max_size=8), min_size=0, max_size=70))
def test_the_incremental_frontier_gives_the_same_root(entries: list[bytes]) -> None:
    leaves = [log.leaf_hash(e) for e in entries]
    frontier: list[bytes] = []
    for size, leaf in enumerate(leaves):
        log.frontier_push(frontier, size, leaf)
        assert len(frontier) == bin(size + 1).count("1")
    assert log.frontier_root(frontier) == log._subtree_root(leaves)


def test_checkpoints_are_signed_and_any_edit_breaks_the_signature() -> None:
    key = Ed25519PrivateKey.generate()
    cp = log.sign(key, 8, bytes.fromhex(ROOTS[8]), 123)
    assert log.signature_ok(cp, key.public_key())
    again = log.Checkpoint.from_json(cp.to_json())
    assert again == cp and log.signature_ok(again, key.public_key())
    for edited in (
        log.Checkpoint(9, cp.root, cp.timestamp_us, cp.key_id, cp.signature),
        log.Checkpoint(cp.size, bytes(32), cp.timestamp_us, cp.key_id, cp.signature),
        log.Checkpoint(cp.size, cp.root, 124, cp.key_id, cp.signature),
    ):
        assert not log.signature_ok(edited, key.public_key())
    assert not log.signature_ok(cp, Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize("chunk", [1, 2, 4, 8, 16])
def test_a_forest_gives_the_same_audit_paths_as_all_the_leaves(chunk: int) -> None:
    known: dict[int, bytes] = {}
    for size in range(1, len(MANY) + 1):
        leaves = MANY[:size]
        for index in range(size):
            forest = log.Forest(size, lambda a, b, now=leaves: now[a:b], known, chunk)
            assert forest.inclusion_proof(index) == log.inclusion_proof(index, leaves)


def test_a_receipt_reads_a_few_chunks_once_the_chunk_roots_are_known() -> None:
    size, chunk = 5000, 64
    leaves = [log.leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return leaves[start:end]

    known: dict[int, bytes] = {}
    first = log.Forest(size, read, known, chunk).inclusion_proof(1234)
    assert first == log.inclusion_proof(1234, leaves)
    assert sum(b - a for a, b in reads) <= size  # the first one reads each leaf at most once
    reads.clear()
    later = log.Forest(size, read, known, chunk).inclusion_proof(4321)
    assert later == log.inclusion_proof(4321, leaves)
    assert len(reads) <= 2 and sum(b - a for a, b in reads) <= 2 * chunk, reads
    with pytest.raises(ValueError):
        log.Forest(size, read, known, chunk).inclusion_proof(size)
    with pytest.raises(ValueError):
        log.Forest(size, read, known, 48)
