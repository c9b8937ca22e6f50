// The console: the web page at `/` (chat, the process table, memory and throughput charts),
// plain HTML, CSS and JavaScript from src/api/console/, compiled into the binary by
// src/api/console/embed.cmake. The page talks to the daemon only through its public API, so
// it holds no secrets; a key the user types stays in the browser's sessionStorage.
//
// Thread safety: the files are immutable; the routes may run on any thread.
#ifndef LLMASOS_API_CONSOLE_H_
#define LLMASOS_API_CONSOLE_H_

#include <span>
#include <string_view>

#include "api/router.h"

namespace llmasos::api {

struct ConsoleFile {
  std::string_view name;          // "index.html", "console.js", ...
  std::string_view content_type;  // with its charset
  std::string_view body;
};

// Every embedded file, in the order embed.cmake was given them; index.html is among them.
std::span<const ConsoleFile> ConsoleFiles();

// GET / (index.html) and GET /console/NAME for every other file.
void AddConsoleRoutes(Router& router);

}  // namespace llmasos::api

#endif  // LLMASOS_API_CONSOLE_H_
