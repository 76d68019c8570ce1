// /whisk.system/utils/sort: `lines` in JavaScript's default order (elements compared as strings), and the count.
function main(args) {
  const lines = args.lines || [];
  console.log(`sort: ${lines.length} lines`);
  lines.sort();
  return { lines, length: lines.length };
}
