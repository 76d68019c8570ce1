// /whisk.system/utils/cat: `lines` (an array) joined by newlines into `payload`; the lines come back as given.
function main(args) {
  const lines = args.lines || [];
  const out = { lines, payload: lines.join('\n') };
  console.log(`cat: returning ${JSON.stringify(out)}`);
  return out;
}
