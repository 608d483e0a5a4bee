// The one error type of mesatee's C++: a status code from mesatee_types.h and
// a message that says what was wrong (never a key or plaintext).
#pragma once

#include <stdexcept>
#include <string>

#include "mesatee_types.h"

namespace mesatee {

class Error : public std::runtime_error {
public:
    Error(mesatee_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    mesatee_status status() const noexcept { return status_; }

private:
    mesatee_status status_;
};

[[noreturn]] inline void fail(mesatee_status status, const std::string& message) {
    throw Error(status, message);
}

}  // namespace mesatee
