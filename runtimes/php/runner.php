<?php
/*
 * Streamwhisk's PHP launcher for the ActionLoop proxy (runtimes/actionloop/proxy.py), started once per container
 * from bin/exec (written by runtimes/php/compile) as `php -f runner.php -- <main>` in the action's directory.
 *
 * It behaves as OpenWhisk's PHP runtime (apache/openwhisk-runtime-php core/php8.xAction/runner.php):
 * - vendor/autoload.php (the action's own vendor/, else the runtime's Guzzle and ramsey/uuid) and index.php are
 *   loaded, then each run calls `<main>(array $args)` with the run's other keys as __OW_* environment variables.
 * - a returned array is the answer (as a JSON object); an ArrayObject-like object or a stdClass is turned into an
 *   array, null into []; anything else is written as is ("The action did not return a dictionary or array.").
 * - an uncaught Throwable, or a fatal error, is written to stderr and answered "An error occurred running the
 *   action." (not JSON: the proxy answers 502 "The action did not return a dictionary or array.").
 * Protocol: one JSON line per run on stdin, one answer line on fd 3; with __OW_WAIT_FOR_ACK, {"ok":true} on fd 3
 * once index.php is loaded (a parse error there fails the init instead of the first run).
 */

$__ow_answers = fopen('php://fd/3', 'wb');

register_shutdown_function(static function () use ($__ow_answers) {
    $last = error_get_last();
    if ($last !== null && in_array($last['type'], [E_ERROR, E_CORE_ERROR, E_COMPILE_ERROR, E_USER_ERROR], true)) {
        file_put_contents('php://stderr', "An error occurred running the action.\n");
        fwrite($__ow_answers, "An error occurred running the action.\n");
    }
    fclose($__ow_answers);
});

require 'vendor/autoload.php';
require 'index.php';

if (getenv('__OW_WAIT_FOR_ACK') !== false) {
    fwrite($__ow_answers, "{\"ok\":true}\n");
}

/** The answer line for one request line. */
function __ow_answer(string $line, string $function): string
{
    $request = json_decode($line, true);
    if (!is_array($request)) {
        $request = [];
    }
    foreach ($request as $key => $value) {
        if ($key !== 'value') {
            $name = '__OW_' . strtoupper($key);
            $_ENV[$name] = $value;
            putenv($name . '=' . $value);
        }
    }
    try {
        $result = $function($request['value'] ?? []);
        if (is_object($result)) {
            if (method_exists($result, 'getArrayCopy')) {
                $result = $result->getArrayCopy();
            } elseif ($result instanceof stdClass) {
                $result = (array)$result;
            }
        } elseif ($result === null) {
            $result = [];
        }
        if (!is_array($result)) {
            file_put_contents('php://stderr', 'Result must be an array but has type "' . gettype($result) . '": '
                . $result);
            file_put_contents('php://stdout', 'The action did not return a dictionary or array.');
            return (string)$result;
        }
        return json_encode((object)$result);  // an empty array is {}
    } catch (Throwable $e) {
        file_put_contents('php://stderr', (string)$e);
        return 'An error occurred running the action.';
    }
}

$__ow_main = $argv[1] ?? 'main';
while ($__ow_line = fgets(STDIN)) {
    $__ow_answer = __ow_answer($__ow_line, $__ow_main);
    // the sentinels that follow must start their own lines
    file_put_contents('php://stderr', "\n");
    file_put_contents('php://stdout', "\n");
    fwrite($__ow_answers, $__ow_answer . "\n");
}
