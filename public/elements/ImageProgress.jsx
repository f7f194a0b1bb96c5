// Images being made: a progress bar the server moves while the provider works (estimated from the
// model's measured pace, jumping as each image arrives), the partial images a provider streams
// (where it does), and each image's thumbnail as it comes.
// When the work ends the message under it shows the thumbnails for good (they are kept with the
// thread); this element is live only.
import { Progress } from "@/components/ui/progress";

export default function ImageProgress() {
  const state = props.state || "working";
  const said = {
    working: `${props.done} of ${props.asked} ready · ${props.elapsed_s} s`,
    done: `${props.done} of ${props.asked} ready`,
    failed: `${props.done} of ${props.asked} came back`,
    stopped: `Stopped: ${props.done} of ${props.asked} came back`,
  }[state];
  return (
    <div id="image-progress" data-state={state} data-percent={props.percent} className="flex flex-col gap-2 w-full max-w-md">
      <div className="flex justify-between text-sm text-muted-foreground">
        <span>{props.label}</span>
        <span id="image-progress-text">{said} · {props.percent}%</span>
      </div>
      <Progress value={props.percent} className="h-2" />
      {props.partials && props.partials.length ? (
        <div className="flex gap-2 flex-wrap" id="image-partials">
          {props.partials.map((src, n) => (
            <img key={n} src={src} alt="" className="h-20 w-20 object-cover rounded-md opacity-80 blur-[1px]" />
          ))}
        </div>
      ) : null}
      {props.previews && props.previews.length ? (
        <div className="flex gap-2 flex-wrap">
          {props.previews.map((src) => (
            <img key={src} src={src} alt="" className="h-20 w-20 object-cover rounded-md" />
          ))}
        </div>
      ) : null}
    </div>
  );
}
