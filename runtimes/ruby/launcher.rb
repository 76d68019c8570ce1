# Streamwhisk's Ruby launcher for the ActionLoop proxy (runtimes/actionloop/proxy.py), started once per container
# from bin/exec (written by runtimes/ruby/compile) as `ruby launcher.rb <main>` in the action's directory.
#
# It behaves as OpenWhisk's Ruby ActionLoop runtime (apache/openwhisk-runtime-ruby core/ruby2.6ActionLoop,
# lib/launcher.rb):
# - main.rb is required, then each run calls `<main>(params)` with the run's other keys as __OW_* environment
#   variables; the result, as JSON, is the answer (a Hash or an Array; anything else the proxy answers with 502
#   "The action did not return a dictionary or array.").
# - any exception (exit included: SystemExit) is printed as "exception: <message>" on stdout and answered
#   {"error": "<message>"}, an application error.
# Protocol: one JSON line per run on stdin, one answer line on fd 3; with __OW_WAIT_FOR_ACK, {"ok":true} on fd 3
# once main.rb is loaded (a syntax error there fails the init instead of the first run).
require "json"

main_name = ARGV.shift || "main"
answers = IO.new(3, "w")

require "./main"

if ENV["__OW_WAIT_FOR_ACK"]
  answers.puts({ ok: true }.to_json)
  answers.flush
end

while (line = STDIN.gets)
  params = {}
  JSON.parse(line).each do |key, value|
    if key == "value"
      params = value
    else
      ENV["__OW_#{key.upcase}"] = value.is_a?(String) || value.nil? ? value : value.to_json
    end
  end
  result = {}
  begin
    result = send(main_name, params)
  rescue Exception => e # rubocop:disable Lint/RescueException -- as OpenWhisk's launcher: exit too
    puts "exception: #{e}"
    result["error"] = e.to_s
  end
  STDOUT.flush
  STDERR.flush
  answers.puts(result.to_json)
  answers.flush
end
