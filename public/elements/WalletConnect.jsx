// Binding a wallet by Sign-In with Ethereum. With a browser wallet (EIP-1193 `window.ethereum`):
// ask for its account, get the sign-in message the server writes for that address (with a nonce
// of its own), have the wallet sign it (`personal_sign`), and send the signature to be checked.
// Without one: the server walks the person through signing in any wallet and pasting the result.
import { useState } from "react";

function utf8Hex(text) {
  return (
    "0x" +
    Array.from(new TextEncoder().encode(text))
      .map((b) => b.toString(16).padStart(2, "0"))
      .join("")
  );
}

export default function WalletConnect() {
  const [status, setStatus] = useState("");
  const [busy, setBusy] = useState(false);
  const hasWallet = typeof window !== "undefined" && !!window.ethereum;

  async function connect() {
    setBusy(true);
    try {
      setStatus("Asking your wallet for its account…");
      const [address] = await window.ethereum.request({ method: "eth_requestAccounts" });
      if (!address) throw new Error("the wallet gave no account");
      const asked = await callAction({ name: props.message_action, payload: { address } });
      const reply = asked && asked.response;
      if (!reply || reply.error) throw new Error((reply && reply.error) || "no message");
      setStatus("Sign the message in your wallet…");
      const signature = await window.ethereum.request({
        method: "personal_sign",
        params: [utf8Hex(reply.message), address],
      });
      const bound = await callAction({
        name: props.bind_action,
        payload: { message: reply.message, signature },
      });
      const result = bound && bound.response;
      setStatus(result && result.ok ? result.text : (result && result.error) || "Not bound.");
    } catch (error) {
      setStatus("Not bound: " + ((error && error.message) || String(error)));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div id="wallet-connect" className="flex flex-col gap-2 rounded-md border p-3 text-sm">
      <div className="flex flex-wrap gap-2">
        {hasWallet ? (
          <button
            id="wallet-connect-browser"
            type="button"
            disabled={busy}
            className="rounded-md border px-3 py-1 hover:bg-accent"
            onClick={connect}
          >
            Connect browser wallet
          </button>
        ) : (
          <span>No browser wallet found on this page.</span>
        )}
        <button
          id="wallet-connect-manual"
          type="button"
          disabled={busy}
          className="rounded-md border px-3 py-1 hover:bg-accent"
          onClick={() => callAction({ name: props.manual_action, payload: {} })}
        >
          Sign in another wallet
        </button>
      </div>
      {status ? <div id="wallet-connect-status">{status}</div> : null}
    </div>
  );
}
