// The balance badge: pinned to the top right of the chat while it is open. The server updates its
// props (CustomElement.update) after every charge, so it changes without a reload.
export default function CreditBadge() {
  const low = props.low === true;
  return (
    <div
      id="credit-badge"
      data-units={props.units}
      title={`${props.held ? props.held + " credits held for an answer in progress. " : ""}1 credit = $${props.credit_usd}`}
      style={{ position: "fixed", top: "14px", right: "10.5rem", zIndex: 50 }}
      className={
        "rounded-full border px-3 py-1 text-sm font-medium shadow-sm " +
        (low ? "bg-destructive text-destructive-foreground" : "bg-card text-card-foreground")
      }
    >
      {props.credits} credits
    </div>
  );
}
