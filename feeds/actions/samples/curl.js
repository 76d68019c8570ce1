// /whisk.system/samples/curl: fetches `payload` (a URL; http:// when it has no scheme) and answers with the body,
// or with the error, as `msg`. OpenWhisk's sample shells out to curl with a 3 s connect timeout; this uses
// Node's fetch (no shell, no curl binary needed) with the same 3 s to get an answer.
async function main(params) {
  const target = String(params.payload);
  console.log(`Curl to ${target}`);
  const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(target) ? target : `http://${target}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 3000);
  try {
    const res = await fetch(url, { signal: abort.signal });
    clearTimeout(timer);
    const body = await res.text();
    console.log(body);
    return { msg: body };
  } catch (e) {
    clearTimeout(timer);
    const msg = `curl: ${e.cause ? e.cause.message || e.cause.code : e.message}`;
    console.log(msg);
    return { msg };
  }
}
