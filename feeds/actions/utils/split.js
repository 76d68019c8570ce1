// /whisk.system/utils/split: `payload` (as a string) cut at `separator` (default: line breaks) into `lines`;
// the payload comes back as given. A missing payload is an error, as in OpenWhisk's catalog.
function main(args) {
  const text = args.payload.toString();
  const lines = text.split(args.separator || /\r?\n/);
  console.log(`split: ${lines.length} lines`);
  return { lines, payload: args.payload };
}
