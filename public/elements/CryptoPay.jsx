// Paying a crypto quote from the browser wallet: switch it to the quote's chain and ask it to send
// exactly the transaction the server prepared (the coin, or the token's transfer). The watcher
// finds the payment on the chain by itself; the hash is only shown (and can be pasted with /paid).
import { useState } from "react";

export default function CryptoPay() {
  const [status, setStatus] = useState("");
  const [busy, setBusy] = useState(false);
  const hasWallet = typeof window !== "undefined" && !!window.ethereum;

  async function pay() {
    setBusy(true);
    try {
      const [from] = await window.ethereum.request({ method: "eth_requestAccounts" });
      const chain = await window.ethereum.request({ method: "eth_chainId" });
      if (parseInt(chain, 16) !== parseInt(props.chain_id, 16)) {
        await window.ethereum.request({
          method: "wallet_switchEthereumChain",
          params: [{ chainId: props.chain_id }],
        });
      }
      setStatus("Confirm the payment in your wallet…");
      const hash = await window.ethereum.request({
        method: "eth_sendTransaction",
        params: [{ from, to: props.to, value: props.value, data: props.data }],
      });
      setStatus("Sent: " + hash + ". " + props.after);
      await callAction({ name: props.sent_action, payload: { tx: hash, order: props.order } });
    } catch (error) {
      setStatus("Not sent: " + ((error && error.message) || String(error)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div id="crypto-pay" className="flex flex-col gap-2 text-sm">
      {hasWallet ? (
        <button
          id="crypto-pay-browser"
          type="button"
          disabled={busy}
          className="w-fit rounded-md border px-3 py-1 hover:bg-accent"
          onClick={pay}
        >
          Pay {props.amount} from browser wallet
        </button>
      ) : null}
      {status ? <div id="crypto-pay-status" className="break-all">{status}</div> : null}
    </div>
  );
}
