// The ActionLoop launcher compiled with every Go action that has no func main() of its own (as
// apache/openwhisk-runtime-go's lib/launcher.go): one JSON line per activation on stdin, the action's answer as one
// JSON line on file descriptor 3. The compile script renames the entry point it calls to the capitalised --main.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

func answer(out *os.File, v interface{}) {
	line, err := json.Marshal(v)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		line, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	out.Write(append(line, '\n')) // json.Marshal never leaves a raw newline in its output
}

func main() {
	entry := reflect.ValueOf(Main)
	switch entry.Type().Out(0).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array:
	default:
		fmt.Println("Support map and slice and array only")
		os.Exit(1)
	}
	out := os.NewFile(3, "pipe") // left open: a panic's trace then reaches the log before the proxy sees the end
	if os.Getenv("__OW_WAIT_FOR_ACK") != "" {
		fmt.Fprintln(out, `{"ok": true}`)
	}
	in := bufio.NewReader(os.Stdin)
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			if err != io.EOF {
				fmt.Fprintln(os.Stderr, err)
			}
			return
		}
		var request map[string]interface{}
		if err := json.Unmarshal(line, &request); err != nil {
			fmt.Fprintln(os.Stderr, err)
			answer(out, map[string]string{"error": err.Error()})
			continue
		}
		for key, value := range request {
			if s, ok := value.(string); ok && key != "value" {
				os.Setenv("__OW_"+strings.ToUpper(key), s)
			}
		}
		var arg reflect.Value
		if list, ok := request["value"].([]interface{}); ok {
			arg = reflect.ValueOf(list)
		} else {
			params, _ := request["value"].(map[string]interface{})
			arg = reflect.ValueOf(params)
		}
		answer(out, entry.Call([]reflect.Value{arg})[0].Interface())
		os.Stdout.Sync()
		os.Stderr.Sync()
	}
}
