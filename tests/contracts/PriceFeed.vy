# pragma version ~=0.4.3
"""
@title A test price feed with Chainlink's AggregatorV3 interface
@notice The owner sets each round's answer and when it was updated.
"""

owner: address
decimals: public(uint8)
description: public(String[32])
round: uint80
answer: int256
updated_at: uint256
answered_in: uint80


@deploy
def __init__(decimals_: uint8, description_: String[32]):
    self.owner = msg.sender
    self.decimals = decimals_
    self.description = description_


@external
def set_answer(answer_: int256, updated_at_: uint256, answered_in_behind: uint80):
    """A new round: `answer_` as of `updated_at_`, carried over from `answered_in_behind`
    rounds before (0: answered in this round)."""
    assert msg.sender == self.owner, "only the owner"
    self.round += 1
    self.answer = answer_
    self.updated_at = updated_at_
    self.answered_in = self.round - answered_in_behind


@view
@external
def latestRoundData() -> (uint80, int256, uint256, uint256, uint80):
    return (self.round, self.answer, self.updated_at, self.updated_at, self.answered_in)
