// What the client scripts share: the client from APIHOST/AUTH, and steps whose results (or {error, statusCode})
// gather in one object, so a failing step does not stop the run and the pytest side sees every difference at once.
'use strict'

const openwhisk = require('openwhisk')

const ow = openwhisk({ apihost: process.env.APIHOST, api_key: process.env.AUTH, ignore_certs: true })
const out = {}

async function step (name, fn) {
  try {
    out[name] = await fn()
  } catch (e) {
    out[name] = { error: e.message, statusCode: e.statusCode === undefined ? null : e.statusCode }
  }
}

module.exports = { ow, out, step }
