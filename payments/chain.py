"""Reading one EVM chain through its JSON-RPC node (web3.py): the only module that speaks to it.

What the app needs of a chain is small: its id, its head and finalized block, the hash of a block,
the transfers to our receiving address (ERC-20 `Transfer` logs emitted by the configured token
contract, and plain transactions carrying native coin), a transaction's transfers by its hash,
whether a transfer is still where it was mined, a price feed's latest answer and whether an
address holds code. Everything comes back as plain records with lowercase hex strings and ints.

Only transfers a chain can prove are reported: a transaction whose receipt failed carries no
payment, and a `Transfer` log counts only when the configured token contract emitted it (web3.py
decodes the same event from any contract, so a look-alike token would pass otherwise). Native coin
sent by a contract wallet through an internal call is not a transaction to us and is not seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from eth_typing import HexStr
from eth_utils import to_checksum_address
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound, TransactionNotFound
from web3.providers import AsyncBaseProvider, AsyncHTTPProvider

from payments.errors import ProviderDown

NATIVE_LOG_INDEX = -1  # a native transfer has no log: its transaction is the payment
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
FEED_ABI = [
    {"name": "latestRoundData", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "roundId", "type": "uint80"}, {"name": "answer", "type": "int256"},
                 {"name": "startedAt", "type": "uint256"}, {"name": "updatedAt", "type": "uint256"},
                 {"name": "answeredInRound", "type": "uint80"}]},
    {"name": "decimals", "type": "function", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
]  # fmt: skip
T = TypeVar("T")


@dataclass(frozen=True)
class Transfer:
    """Coin or tokens that reached the receiving address, where the chain put them."""

    chain_id: int
    tx_hash: str  # 0x..., lowercase
    log_index: int  # NATIVE_LOG_INDEX for native coin
    token: str | None  # the token contract (lowercase), None for native coin
    sender: str  # lowercase
    recipient: str  # lowercase
    amount: int  # atomic units (wei, or the token's smallest unit)
    block_number: int
    block_hash: str
    block_time: int  # unix seconds

    @property
    def key(self) -> str:
        """The payment's identity, unique on every chain: `<chain id>:<tx hash>:<log index>`."""
        return f"{self.chain_id}:{self.tx_hash}:{self.log_index}"


@dataclass(frozen=True)
class Round:
    """A price feed's latest answer (AggregatorV3 `latestRoundData`)."""

    round_id: int
    answer: int
    decimals: int
    updated_at: int  # unix seconds
    answered_in_round: int

    @property
    def price(self) -> Decimal:
        return Decimal(self.answer).scaleb(-self.decimals)


class Chain:
    """One chain, through one node: `Chain.at(url)` for a JSON-RPC URL, or any web3.py provider
    (tests pass web3.py's in-process tester chain)."""

    def __init__(self, provider: AsyncBaseProvider, chain_id: int, timeout_s: float = 10.0):
        self.w3 = AsyncWeb3(provider)
        self.chain_id = chain_id
        self.timeout_s = timeout_s
        self._times: dict[str, int] = {}  # block hash -> timestamp

    @classmethod
    def at(cls, url: str, chain_id: int, timeout_s: float = 10.0) -> Chain:
        return cls(
            AsyncHTTPProvider(url, request_kwargs={"timeout": timeout_s}), chain_id, timeout_s
        )

    @staticmethod
    def checksum(address: str) -> str:
        """`address` as EIP-55 writes it (`ValueError` if it is not an address)."""
        return str(to_checksum_address(address))

    async def check(self) -> None:
        """That the node serves the configured chain (`ValueError` if it serves another)."""
        served = await self._ask(self.w3.eth.chain_id)
        if served != self.chain_id:
            raise ValueError(
                f"The node at CRYPTO_RPC_URL serves chain {served}, not CRYPTO_CHAIN_ID "
                f"{self.chain_id}: nothing is watched or credited until they agree."
            )

    async def head(self) -> int:
        return int(await self._ask(self.w3.eth.block_number))

    async def finalized(self) -> int | None:
        """The chain's finalized block, where it has one."""
        try:
            block = await self._ask(self.w3.eth.get_block("finalized"))
        except ProviderDown as down:
            if isinstance(down.__cause__, BlockNotFound | ValueError):
                return None
            raise
        return int(block["number"])

    async def block_hash(self, number: int) -> str | None:
        """The hash of block `number` on the chain as it is now (None past the head)."""
        try:
            block = await self._ask(self.w3.eth.get_block(number))
        except ProviderDown as down:
            if isinstance(down.__cause__, BlockNotFound):
                return None
            raise
        return _hex(block["hash"])

    async def token_transfers(
        self, token: str, recipient: str, first: int, last: int
    ) -> list[Transfer]:
        """The `token`'s Transfer logs to `recipient` in blocks `first`..`last`."""
        logs = await self._ask(
            self.w3.eth.get_logs({
                "address": to_checksum_address(token), "fromBlock": first, "toBlock": last,
                "topics": [TRANSFER_TOPIC, None, _topic(recipient)],
            })
        )  # fmt: skip
        found = []
        for log in logs:
            transfer = await self._from_log(log, token, recipient)
            if transfer is not None:
                found.append(transfer)
        return found

    async def native_transfers(
        self, recipient: str, first: int, last: int, parallel: int = 8
    ) -> list[Transfer]:
        """Transactions sending native coin to `recipient` in blocks `first`..`last` whose
        receipts succeeded."""
        found: list[Transfer] = []
        for start in range(first, last + 1, parallel):
            numbers = range(start, min(start + parallel, last + 1))
            blocks = await asyncio.gather(*(self._full_block(n) for n in numbers))
            for block in blocks:
                for tx in block["transactions"]:
                    if tx.get("to") and tx["to"].lower() == recipient and int(tx["value"]) > 0:
                        transfer = await self._native(tx, block)
                        if transfer is not None:
                            found.append(transfer)
        return found

    async def transfers_in(
        self, tx_hash: str, token: str | None, recipient: str
    ) -> tuple[bool, list[Transfer]]:
        """Whether transaction `tx_hash` succeeded, and what it paid `recipient` in native coin
        and in `token`. `LookupError` if this chain has no such mined transaction."""
        receipt = await self._receipt(tx_hash)
        if receipt is None:
            raise LookupError(f"There is no mined transaction {tx_hash} on chain {self.chain_id}.")
        if receipt["status"] != 1:
            return False, []
        found = []
        tx = await self._ask(self.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
        if tx.get("to") and tx["to"].lower() == recipient and int(tx["value"]) > 0:
            block = {"hash": receipt["blockHash"], "number": receipt["blockNumber"]}
            native = await self._native(tx, block)
            if native is not None:
                found.append(native)
        for log in receipt["logs"]:
            transfer = await self._from_log(log, token, recipient) if token else None
            if transfer is not None:
                found.append(transfer)
        return True, found

    async def where(self, tx_hash: str) -> tuple[int, str] | None:
        """The block (number, hash) holding transaction `tx_hash` now, if it succeeded there
        (None: not on the chain, or failed)."""
        receipt = await self._receipt(tx_hash)
        if receipt is None or receipt["status"] != 1:
            return None
        return int(receipt["blockNumber"]), _hex(receipt["blockHash"])

    async def price(self, feed: str) -> Round:
        """The latest answer of an AggregatorV3-style price feed at `feed`."""
        contract = self.w3.eth.contract(address=to_checksum_address(feed), abi=FEED_ABI)
        latest = await self._ask(contract.functions.latestRoundData().call())
        decimals = await self._ask(contract.functions.decimals().call())
        round_id, answer, _, updated_at, answered_in = latest
        return Round(int(round_id), int(answer), int(decimals), int(updated_at), int(answered_in))

    async def has_code(self, address: str) -> bytes:
        """The code at `address` (empty for an ordinary account)."""
        return bytes(await self._ask(self.w3.eth.get_code(to_checksum_address(address))))

    async def close(self) -> None:
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    async def _full_block(self, number: int) -> Any:
        return await self._ask(self.w3.eth.get_block(number, full_transactions=True))

    async def _native(self, tx: Any, block: Any) -> Transfer | None:
        receipt = await self._receipt(_hex(tx["hash"]))
        if receipt is None or receipt["status"] != 1:
            return None
        return Transfer(
            self.chain_id, _hex(tx["hash"]), NATIVE_LOG_INDEX, None, tx["from"].lower(),
            tx["to"].lower(), int(tx["value"]), int(block["number"]), _hex(block["hash"]),
            await self._time(block),
        )  # fmt: skip

    async def _from_log(self, log: Any, token: str, recipient: str) -> Transfer | None:
        topics = [_hex(t) for t in log["topics"]]
        if (
            log["address"].lower() != token  # emitted by the configured contract, no other
            or len(topics) != 3
            or topics[0] != TRANSFER_TOPIC
            or topics[2] != _topic(recipient)
            or log.get("removed")
        ):
            return None
        block = {"hash": log["blockHash"], "number": log["blockNumber"]}
        return Transfer(
            self.chain_id, _hex(log["transactionHash"]), int(log["logIndex"]), token,
            "0x" + topics[1][-40:], recipient, int.from_bytes(bytes(log["data"])[:32], "big"),
            int(log["blockNumber"]), _hex(log["blockHash"]), await self._time(block),
        )  # fmt: skip

    async def _time(self, block: Any) -> int:
        if "timestamp" in block:
            return int(block["timestamp"])
        key = _hex(block["hash"])
        if key not in self._times:
            if len(self._times) > 10_000:
                self._times.clear()
            header = await self._ask(self.w3.eth.get_block(HexStr(key)))
            self._times[key] = int(header["timestamp"])
        return self._times[key]

    async def _receipt(self, tx_hash: str) -> Any:
        try:
            return await self._ask(self.w3.eth.get_transaction_receipt(tx_hash))  # type: ignore[arg-type]
        except ProviderDown as down:
            if isinstance(down.__cause__, TransactionNotFound):
                return None
            raise

    async def _ask(self, call: Awaitable[T]) -> T:
        """One call to the node: `ProviderDown` if it fails or takes longer than the timeout."""
        try:
            return await asyncio.wait_for(call, self.timeout_s)
        except Exception as exc:  # the node's fault, whatever it is: try again later
            raise ProviderDown(f"chain {self.chain_id}: {type(exc).__name__}: {exc}") from exc


def _hex(value: bytes | str) -> str:
    if isinstance(value, str):
        return value.lower() if value.startswith("0x") else "0x" + value.lower()
    return "0x" + bytes(value).hex()


def _topic(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")
