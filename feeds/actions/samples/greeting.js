// /whisk.system/samples/greeting: "Hello, <name or payload> from <place>!" as `payload`.
function main(params) {
  console.log('params:', params);
  const who = params.name || params.payload || 'stranger';
  const where = params.place || 'somewhere';
  return { payload: `Hello, ${who} from ${where}!` };
}
