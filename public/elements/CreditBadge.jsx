// The balance badge: pinned to the top right of the chat while it is open. The server sends new
// props after every charge and whenever credits arrive from outside the chat (a payment, a grant),
// so it changes without a reload. Where credits are sold, its "Buy" button shows the packs.
export default function CreditBadge() {
  const low = props.low === true;
  const title =
    (props.held ? props.held + " credits held for an answer in progress. " : "") +
    (props.owed ? props.owed + " credits owed: nothing can be spent until it is covered. " : "") +
    `1 credit = $${props.credit_usd}`;
  return (
    <div
      id="credit-badge"
      data-units={props.units}
      title={title}
      style={{ position: "fixed", top: "14px", right: "10.5rem", zIndex: 50 }}
      className={
        "flex items-center gap-2 rounded-full border px-3 py-1 text-sm font-medium shadow-sm " +
        (low ? "bg-destructive text-destructive-foreground" : "bg-card text-card-foreground")
      }
    >
      <span id="credit-badge-amount">
        {props.owed ? `owes ${props.owed}` : `${props.credits} credits`}
      </span>
      {props.buy ? (
        <button
          id="credit-badge-buy"
          type="button"
          className="rounded-full border px-2 text-xs hover:bg-accent"
          onClick={() => callAction({ name: props.buy, payload: {} })}
        >
          Buy
        </button>
      ) : null}
    </div>
  );
}
