#include "api/console.h"

#include <string>

namespace llmasos::api {

void AddConsoleRoutes(Router& router) {
  for (const ConsoleFile& file : ConsoleFiles()) {
    std::string path = file.name == "index.html" ? "/" : "/console/" + std::string(file.name);
    // Public: the page and its scripts hold no data; the page asks for a key and sends it.
    router.Add("GET", path, RouteScope::kPublic, [&file](const ExchangePtr& ex) {
      // no-cache: a browser revalidates, so a new binary's page is never mixed with an old
      // script. The policy keeps the page to its own origin (no CDN, no inline script).
      ex->Respond(200, std::string(file.content_type), std::string(file.body),
                  {{"Cache-Control", "no-cache"},
                   {"X-Content-Type-Options", "nosniff"},
                   {"Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"}});
    });
  }
}

}  // namespace llmasos::api
