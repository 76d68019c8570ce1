// /whisk.system/utils/head: the first `num` (default 1) of `lines`, and `num`.
function main(args) {
  const lines = args.lines || [];
  const num = args.num || 1;
  const first = lines.slice(0, num);
  console.log(`head: first ${num} of ${lines.length} lines: ${first}`);
  return { lines: first, num };
}
