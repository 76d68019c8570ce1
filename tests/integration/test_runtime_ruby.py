"""The Ruby kind (ruby:3.3, Debian trixie's Ruby 3.3), as OpenWhisk's Ruby ActionLoop runtime behaves
(apache/openwhisk-runtime-ruby core/ruby2.6ActionLoop, docs/actions-ruby.md): `def main(args)` returning a Hash,
cold then warm, logs, `--main`, zips with main.rb, and the error paths with its statuses and texts (an exception,
exit included, is the application error {"error": message})."""

from __future__ import annotations

import pytest

from tests.integration import kinds
from tests.integration.kinds import NO_BINARY, NO_START, anns, error_of, invoke, logs, put, zipped
from tests.stack import Client, Stack

pytestmark = pytest.mark.integration

KIND = "ruby:3.3"
DEV = "action developer error"
APP = "application error"

# docs/actions-ruby.md's hello (plus the version that runs it), and a second entry.
HELLO = """def main(args)
  name = args["name"] || "stranger"
  greeting = "Hello #{name}!"
  puts greeting
  { "greeting" => greeting, "version" => RUBY_VERSION.split(".")[0, 2].join(".") }
end

def hello(args)
  { "entry" => "hello", "activation_id" => ENV["__OW_ACTIVATION_ID"], "action_name" => ENV["__OW_ACTION_NAME"],
    "namespace" => ENV["__OW_NAMESPACE"], "gems" => [require("jwt"), require("mechanize")] }
end
"""


c = kinds.client_fixture("ruby")


def test_listed(stack: Stack) -> None:
    kinds.family_is_listed(stack, "ruby", KIND, require_main=False)


def test_hello_cold_then_warm_with_logs(c: Client) -> None:
    _, cold, _ = kinds.cold_then_warm(c, KIND, HELLO, version="3.3")
    lines = logs(c, cold["activationId"], "Hello Ada!")
    assert [line.split(" ", 1)[1] for line in lines] == ["stdout: Hello Ada!"]


def test_main_names_another_method(c: Client) -> None:
    rec = invoke(c, put(c, KIND, HELLO, main="hello"))
    got = rec["response"]["result"]
    assert got["entry"] == "hello" and got["activation_id"] == rec["activationId"]
    assert got["action_name"] == "/" + anns(rec)["path"] and got["namespace"] == rec["namespace"]
    assert got["gems"] == [True, True]  # the gems the docs name (jwt, mechanize) are there


def test_docs_array_result(c: Client) -> None:
    name = put(c, KIND, 'def main(args)\n  nums = Array["a","b"]\n  nums\nend\n')
    assert c.post(f"actions/{name}", {}, blocking=True, result=True).json() == ["a", "b"]


def test_zip_actions(c: Client) -> None:
    files = {"main.rb": "require_relative 'helper'\n\ndef main(args)\n  { 'word' => Helper.word }\nend\n",
             "helper.rb": "module Helper\n  def self.word\n    'zipped'\n  end\nend\n"}
    assert invoke(c, put(c, KIND, zipped(files)))["response"]["result"] == {"word": "zipped"}
    # OpenWhisk's rule (and text): a zip's entry point is main.rb at its root.
    rec = invoke(c, put(c, KIND, zipped({"lib/main.rb": "def main(a)\n  a\nend\n"})))
    assert error_of(rec) == (DEV, NO_BINARY)
    assert any(line.endswith("stderr: Invalid Ruby Code: zipped actions must contain main.rb at the root.")
               for line in logs(c, rec["activationId"], "Invalid Ruby Code"))


def test_error_paths(c: Client) -> None:
    # An exception is the action's: {"error": message}, an application error, and "exception: ..." on stdout.
    rec = invoke(c, put(c, KIND, "def main(args)\n  raise 'boom'\nend\n"))
    assert error_of(rec) == (APP, "boom")
    assert any(line.endswith("stdout: exception: boom") for line in logs(c, rec["activationId"], "boom"))
    # exit is an exception too (SystemExit): the launcher answers it and lives on.
    name = put(c, KIND, "def main(args)\n  exit 1\nend\n")
    assert error_of(invoke(c, name)) == (APP, "exit")
    warm = invoke(c, name)
    assert error_of(warm) == (APP, "exit") and "initTime" not in anns(warm)
    # The process ends in the middle of a run (runtime-go's proxy: "command exited").
    rec = invoke(c, put(c, KIND, "def main(args)\n  exit! 1\nend\n"))
    assert error_of(rec) == (DEV, "command exited")
    # No such method.
    rec = invoke(c, put(c, KIND, HELLO, main="niam"))
    status, error = error_of(rec)
    assert status == APP and error.startswith("undefined method `niam' for main")
    # Not a Hash (or an Array).
    rec = invoke(c, put(c, KIND, "def main(args)\n  'abc'\nend\n"))
    assert error_of(rec) == (DEV, "The action did not return a dictionary or array.")
    # A syntax error: main.rb does not load, the init fails.
    rec = invoke(c, put(c, KIND, "def main(args)\n  args +\nend\nend\n"))
    assert error_of(rec) == (DEV, NO_START)
    assert any("syntax error" in line for line in logs(c, rec["activationId"], "syntax error"))


def test_timeout(c: Client) -> None:
    rec = invoke(c, put(c, KIND, "def main(args)\n  sleep 20\n  args\nend\n", timeout=2000))
    assert error_of(rec) == (DEV, "The action exceeded its time limits of 2000 milliseconds.")
    assert anns(rec)["timeout"] is True
