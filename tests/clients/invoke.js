// Drives the npm `openwhisk` client through invocations and activation reads.
// Usage: APIHOST=http://127.0.0.1:PORT AUTH=uuid:key SUFFIX=abc node invoke.js
// Prints one JSON object {step: result}; a failing step records {error, statusCode} and the run goes on,
// so the pytest side (tests/integration/test_npm_invoke.py) can show every difference at once.
'use strict'

const { ow, out, step } = require('./steps')

const sfx = process.env.SUFFIX || 'x'
const py = `npy-${sfx}`
const js = `njs-${sfx}`
const bad = `nbad-${sfx}`

const sleep = (ms) => new Promise(resolve => setTimeout(resolve, ms))

async function main () {
  await step('create.py', () => ow.actions.create({ name: py, action: 'def main(a):\n    print("hi", a.get("n"))\n    return {"n": a.get("n"), "p": a.get("p")}\n', kind: 'python:default', params: { p: 'default' } }))
  await step('create.js', () => ow.actions.create({ name: js, action: 'function main(a) { return {twice: 2 * a.x} }', kind: 'nodejs:default' }))
  await step('create.bad', () => ow.actions.create({ name: bad, action: 'def main(a):\n    return {"error": "bad"}\n', kind: 'python:3' }))

  await step('invoke.result', () => ow.actions.invoke({ name: py, params: { n: 1 }, blocking: true, result: true }))
  await step('invoke.blocking', () => ow.actions.invoke({ name: py, params: { n: 2, p: 'given' }, blocking: true }))
  await step('invoke.js', () => ow.actions.invoke({ name: js, params: { x: 21 }, blocking: true, result: true }))
  await step('invoke.nonblocking', () => ow.actions.invoke({ name: py, params: { n: 3 } }))
  await step('invoke.apperror', () => ow.actions.invoke({ name: bad, blocking: true }))

  const id = out['invoke.blocking'].activationId
  await step('activation.get', () => ow.activations.get({ name: id }))
  await step('activation.result', () => ow.activations.result({ name: id }))
  await step('activation.logs', () => ow.activations.logs({ name: id }))
  await step('activation.get.missing', () => ow.activations.get({ name: '0123456789abcdef0123456789abcdef' }))
  // the non-blocking one: poll until it is stored
  const nb = out['invoke.nonblocking'].activationId
  for (let i = 0; i < 50; i++) {
    await step('activation.nonblocking', () => ow.activations.get({ name: nb }))
    if (!out['activation.nonblocking'].error) break
    await sleep(200)
  }
  for (let i = 0; i < 50; i++) {
    await step('activations.list', () => ow.activations.list({ name: py, limit: 10 }))
    if (Array.isArray(out['activations.list']) && out['activations.list'].length >= 3) break
    await sleep(200)
  }
  await step('activations.list.docs', () => ow.activations.list({ name: py, limit: 1, docs: true }))
  await step('activations.count', () => ow.activations.list({ name: py, count: true }))
}

main().then(() => console.log(JSON.stringify(out)), (e) => { console.log(JSON.stringify({ fatal: String(e) })); process.exit(1) })
