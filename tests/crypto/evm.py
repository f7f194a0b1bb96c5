"""A chain for tests: web3.py's in-process tester chain (or any node, such as anvil), with the test
contracts in tests/contracts compiled offline by vyper, and people with keys of their own.

The same `Evm` drives both: `Evm.tester()` in process, `Evm.at(url)` for a real node."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import vyper
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from web3 import AsyncWeb3
from web3.providers import AsyncBaseProvider, AsyncHTTPProvider
from web3.providers.eth_tester import AsyncEthereumTesterProvider

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"
ETH = 10**18


@cache
def compiled(name: str) -> tuple[list[dict[str, Any]], str]:
    """The ABI and deployment bytecode of tests/contracts/<name>.vy."""
    out = vyper.compile_code(
        (CONTRACTS / f"{name}.vy").read_text(), output_formats=["abi", "bytecode"]
    )
    return out["abi"], out["bytecode"]


@dataclass
class Person:
    """Someone with a key of their own (their wallet)."""

    key: LocalAccount

    @property
    def address(self) -> str:
        return str(self.key.address).lower()

    def sign(self, text: str) -> str:
        return "0x" + bytes(self.key.sign_message(encode_defunct(text=text)).signature).hex()


class Evm:
    def __init__(self, provider: AsyncBaseProvider) -> None:
        self.provider = provider
        self.w3 = AsyncWeb3(provider)
        self.funder: str = ""
        self.people: list[Person] = []
        self.last_raw = b""  # the last transaction `signed` sent, to send again after a reorg

    @classmethod
    def tester(cls) -> Evm:
        return cls(AsyncEthereumTesterProvider())

    @classmethod
    def at(cls, url: str) -> Evm:
        return cls(AsyncHTTPProvider(url))

    async def close(self) -> None:
        """Close the connection to a real node (its HTTP session)."""
        disconnect = getattr(self.provider, "disconnect", None)
        if disconnect is not None:
            await disconnect()

    async def setup(self) -> None:
        self.funder = (await self.w3.eth.accounts)[0]

    async def chain_id(self) -> int:
        return int(await self.w3.eth.chain_id)

    async def deploy(self, name: str, *args: object) -> Any:
        abi, bytecode = compiled(name)
        factory = self.w3.eth.contract(abi=abi, bytecode=bytecode)
        tx = await factory.constructor(*args).transact({"from": self.funder})
        receipt = await self.w3.eth.wait_for_transaction_receipt(tx)
        return self.w3.eth.contract(address=receipt["contractAddress"], abi=abi)

    async def person(self, eth: int = 10 * ETH) -> Person:
        """A new person with a key of their own and some native coin for gas."""
        someone = Person(Account.create())
        await self.send_native_from(self.funder, someone.address, eth)
        self.people.append(someone)
        return someone

    async def send_native_from(self, sender: str, to: str, value: int) -> str:
        tx = await self.w3.eth.send_transaction(
            {"from": sender, "to": AsyncWeb3.to_checksum_address(to), "value": value}
        )
        await self.w3.eth.wait_for_transaction_receipt(tx)
        return "0x" + bytes(tx).hex()

    async def signed(self, who: Person, tx: dict[str, Any]) -> str:
        """Send `tx` signed with `who`'s key; its hash (whether it succeeded or not)."""
        tx = {
            "from": AsyncWeb3.to_checksum_address(who.address),
            "nonce": await self.w3.eth.get_transaction_count(
                AsyncWeb3.to_checksum_address(who.address)
            ),
            "chainId": await self.chain_id(),
            "gas": 200_000,
            "maxFeePerGas": 3 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            **tx,
        }
        raw = who.key.sign_transaction(tx).raw_transaction
        self.last_raw = bytes(raw)
        sent = await self.w3.eth.send_raw_transaction(raw)
        await self.w3.eth.wait_for_transaction_receipt(sent)
        return "0x" + bytes(sent).hex()

    async def resend(self, raw: bytes) -> str:
        sent = await self.w3.eth.send_raw_transaction(raw)
        await self.w3.eth.wait_for_transaction_receipt(sent)
        return "0x" + bytes(sent).hex()

    async def pay_native(self, who: Person, to: str, value: int) -> str:
        return await self.signed(who, {"to": AsyncWeb3.to_checksum_address(to), "value": value})

    async def pay_token(self, who: Person, token: Any, to: str, amount: int) -> str:
        data = token.encode_abi("transfer", [AsyncWeb3.to_checksum_address(to), amount])
        return await self.signed(who, {"to": token.address, "data": data})

    async def call_token(self, who: Person, token: Any, fn: str, args: Sequence[object]) -> str:
        return await self.signed(
            who, {"to": token.address, "data": token.encode_abi(fn, list(args))}
        )

    async def mint(self, token: Any, to: str, amount: int) -> None:
        tx = await token.functions.mint(AsyncWeb3.to_checksum_address(to), amount).transact(
            {"from": self.funder}
        )
        await self.w3.eth.wait_for_transaction_receipt(tx)

    async def mine(self, blocks: int = 1) -> None:
        if isinstance(self.provider, AsyncEthereumTesterProvider):
            self.provider.ethereum_tester.mine_blocks(blocks)
        else:
            await self.provider.make_request("anvil_mine", [hex(blocks)])  # type: ignore[arg-type]

    async def head(self) -> int:
        return int(await self.w3.eth.block_number)

    async def snapshot(self) -> Any:
        if isinstance(self.provider, AsyncEthereumTesterProvider):
            return self.provider.ethereum_tester.take_snapshot()
        return (await self.provider.make_request("evm_snapshot", []))["result"]  # type: ignore[arg-type]

    async def revert(self, snapshot: Any) -> None:
        if isinstance(self.provider, AsyncEthereumTesterProvider):
            self.provider.ethereum_tester.revert_to_snapshot(snapshot)
        else:
            await self.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]

    async def set_price(self, feed: Any, answer: int, updated_at: int, behind: int = 0) -> None:
        tx = await feed.functions.set_answer(answer, updated_at, behind).transact(
            {"from": self.funder}
        )
        await self.w3.eth.wait_for_transaction_receipt(tx)

    async def now(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"])
