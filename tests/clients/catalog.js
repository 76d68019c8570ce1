// Drives the npm `openwhisk` client against the /whisk.system catalog, as its own integration tests do
// (test/integration/actions.test.js, triggers.test.js): fully qualified invokes, a sequence of a shared action,
// the shared package read from another namespace. Usage: APIHOST=... AUTH=uuid:key SUFFIX=abc node catalog.js
// Prints one JSON object {step: result}; a failing step records {error, statusCode} (tests/integration/test_catalog.py).
'use strict'

const { ow, out, step } = require('./steps')

const seq = `catseq-${process.env.SUFFIX || 'x'}`

async function main () {
  await step('echo', () => ow.actions.invoke({ name: '/whisk.system/utils/echo', blocking: true, params: { hello: 'world' } }))
  await step('sort', () => ow.actions.invoke({ actionName: '/whisk.system/utils/sort', blocking: true }))
  await step('package', () => ow.packages.get({ name: '/whisk.system/utils' }))
  await step('packages', () => ow.packages.list({ namespace: 'whisk.system' }))
  await step('sequence', () => ow.actions.create({ name: seq, sequence: ['/whisk.system/utils/split', '/whisk.system/utils/sort'] }))
  await step('sequence.invoke', () => ow.actions.invoke({ name: seq, blocking: true, result: true, params: { payload: 'c\nb\na' } }))
  await step('sequence.delete', () => ow.actions.delete({ name: seq }))
}

main().then(() => console.log(JSON.stringify(out)), (e) => { console.log(JSON.stringify({ fatal: String(e) })); process.exit(1) })
