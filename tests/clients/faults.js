// The npm `openwhisk` client under faults (tests/chaos/test_npm_client_faults.py): blocking invocations in a
// loop for DURATION_MS, with the client's own retry option (async-retry: on any error, as OpenWhisk clients use it).
// Usage: APIHOST=http://127.0.0.1:PORT AUTH=uuid:key NAME=action DURATION_MS=40000 node faults.js
// Prints one JSON object: {calls, ok, failed, retries, wrong, errors, maxMs}.
'use strict'

const openwhisk = require('openwhisk')

const retries = []
const ow = openwhisk({
  apihost: process.env.APIHOST,
  api_key: process.env.AUTH,
  ignore_certs: true,
  retry: { retries: 5, minTimeout: 500, factor: 2, onRetry: (e) => retries.push(`${e.statusCode || ''} ${e.message}`.slice(0, 200)) }
})
const name = process.env.NAME || 'fc'
const until = Date.now() + Number(process.env.DURATION_MS || 40000)

async function main () {
  await ow.actions.create({ name, action: 'import time\ndef main(a):\n    time.sleep(1)\n    return {"n": a.get("n")}\n', kind: 'python:3', overwrite: true })
  const out = { calls: 0, ok: 0, failed: 0, wrong: 0, errors: [], maxMs: 0 }
  const worker = async (k) => {
    let n = 0
    while (Date.now() < until) {
      const t0 = Date.now()
      const want = `${k}-${n++}`
      out.calls++
      try {
        const r = await ow.actions.invoke({ name, params: { n: want }, blocking: true, result: true })
        if (r.n === want) out.ok++
        else out.wrong++
      } catch (e) {
        out.failed++
        out.errors.push(`${e.statusCode || ''} ${e.message}`.slice(0, 200))
      }
      out.maxMs = Math.max(out.maxMs, Date.now() - t0)
    }
  }
  await Promise.all([0, 1, 2].map(worker))
  out.retries = retries.length
  out.retryReasons = retries.slice(0, 20)
  console.log(JSON.stringify(out))
}

main().catch(e => { console.log(JSON.stringify({ fatal: e.message })); process.exit(1) })
