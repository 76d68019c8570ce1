// /whisk.system/samples/helloWorld: logs "hello <payload>!"; the result is empty.
function main(params) {
  console.log('hello', `${params.payload}!`);
  return {};
}
