// Drives the npm `openwhisk` client through create/get/list/update/delete of every entity kind.
// Usage: APIHOST=http://127.0.0.1:PORT AUTH=uuid:key SUFFIX=abc node crud.js
// Prints one JSON object {step: result}; a failing step records {error, statusCode} and the run goes on,
// so the pytest side (tests/integration/test_npm_client.py) can show every difference at once.
'use strict'

const { ow, out, step } = require('./steps')

const sfx = process.env.SUFFIX || 'x'
const pkg = `npkg-${sfx}`
const bind = `nbind-${sfx}`
const action = `nact-${sfx}`
const packaged = `${pkg}/inner`
const trigger = `ntrig-${sfx}`
const rule = `nrule-${sfx}`
const code = 'function main(params) { return params }'

async function main () {
  // packages first: the packaged action and the binding need them
  await step('package.create', () => ow.packages.create({ name: pkg, package: { parameters: [{ key: 'p', value: 1 }] } }))
  await step('package.update', () => ow.packages.update({ name: pkg, package: { publish: true } }))
  await step('binding.create', () => ow.packages.create({ name: bind, package: { binding: { namespace: '_', name: pkg }, parameters: [{ key: 'b', value: 2 }] } }))

  await step('action.create', () => ow.actions.create({ name: action, action: code, kind: 'python:3', params: { a: 1 }, annotations: { x: 'y' } }))
  await step('action.create.again', () => ow.actions.create({ name: action, action: code, kind: 'python:3' }))
  await step('action.get', () => ow.actions.get({ name: action }))
  await step('action.get.nocode', () => ow.actions.get({ name: action, code: false }))
  await step('action.update', () => ow.actions.update({ name: action, action: code + '\n', kind: 'python:3', limits: { memory: 128 } }))
  await step('packaged.create', () => ow.actions.create({ name: packaged, action: code, kind: 'python:3' }))
  await step('packaged.get', () => ow.actions.get({ name: packaged }))
  await step('bound.get', () => ow.actions.get({ name: `${bind}/inner` }))
  await step('action.list', () => ow.actions.list({ limit: 200 }))
  await step('action.count', () => ow.actions.list({ count: true }))

  await step('trigger.create', () => ow.triggers.create({ name: trigger, trigger: { parameters: [{ key: 't', value: 1 }] } }))
  await step('trigger.update', () => ow.triggers.update({ name: trigger, trigger: { parameters: [{ key: 't', value: 2 }] } }))
  await step('rule.create', () => ow.rules.create({ name: rule, action, trigger }))
  await step('rule.get', () => ow.rules.get({ name: rule }))
  await step('rule.disable', () => ow.rules.disable({ name: rule }))
  await step('rule.get.disabled', () => ow.rules.get({ name: rule }))
  await step('rule.enable', () => ow.rules.enable({ name: rule }))
  await step('rule.update', () => ow.rules.update({ name: rule, action: `${pkg}/inner`, trigger }))
  await step('trigger.get', () => ow.triggers.get({ name: trigger }))
  await step('trigger.list', () => ow.triggers.list())
  await step('rule.list', () => ow.rules.list())

  await step('package.get', () => ow.packages.get({ name: pkg }))
  await step('binding.get', () => ow.packages.get({ name: bind }))
  await step('package.list', () => ow.packages.list())
  await step('package.delete.nonempty', () => ow.packages.delete({ name: pkg }))

  await step('rule.delete', () => ow.rules.delete({ name: rule }))
  await step('trigger.delete', () => ow.triggers.delete({ name: trigger }))
  await step('action.delete', () => ow.actions.delete({ name: action }))
  await step('action.get.deleted', () => ow.actions.get({ name: action }))
  await step('packaged.delete', () => ow.actions.delete({ name: packaged }))
  await step('binding.delete', () => ow.packages.delete({ name: bind }))
  await step('package.delete', () => ow.packages.delete({ name: pkg }))
  await step('package.get.deleted', () => ow.packages.get({ name: pkg }))
  await step('namespaces.list', () => ow.namespaces.list())

  process.stdout.write(JSON.stringify(out) + '\n')
}

main().catch(e => { console.error(e); process.exit(1) })
