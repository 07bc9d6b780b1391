#include "daemon/control/control_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_metadata_processor.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/constant_time.h"

namespace bm::daemon::control {
namespace {

absl::StatusOr<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(what, " file ", path, " cannot be read"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Checks `authorization: Bearer <token>` on every call over TCP, in constant time.
class TokenAuthProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit TokenAuthProcessor(const std::string& token) : expected_("Bearer " + token) {}
  bool IsBlocking() const override { return false; }
  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext*, OutputMetadata*,
                       OutputMetadata*) override {
    auto it = auth_metadata.find("authorization");
    if (it == auth_metadata.end())
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "this daemon requires a bearer token (BMSERVER_TOKEN)");
    std::string_view value(it->second.data(), it->second.size());
    if (!common::constant_time_equals(value, expected_))
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "the bearer token was not accepted");
    return grpc::Status::OK;
  }

 private:
  std::string expected_;
};

// A token short enough to guess over the network is refused at start rather than accepted for a remote port.
absl::StatusOr<std::string> read_token(const std::string& path) {
  absl::StatusOr<std::string> text = read_file(path, "token");
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.size() < kMinTokenBytes)
    return absl::InvalidArgumentError(absl::StrCat("token file ", path, " holds ", token.size(),
                                                   " characters; TCP control needs a token of at least ",
                                                   kMinTokenBytes, " (e.g. `openssl rand -hex 32 > ", path, "`)"));
  for (char c : token)
    if (static_cast<unsigned char>(c) < 0x21 || static_cast<unsigned char>(c) > 0x7e)
      return absl::InvalidArgumentError(absl::StrCat("token file ", path,
                                                     " holds a character that cannot travel in an HTTP/2 header "
                                                     "(only printable ASCII without spaces)"));
  return token;
}

absl::Status prepare_unix_socket(const std::string& path, bool user_mode) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create socket directory ", dir.string(), ": ", ec.message()));
    fs::permissions(
        dir, user_mode ? fs::perms::owner_all : fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec,
        ec);
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return absl::OkStatus();
  if (!S_ISSOCK(st.st_mode))
    return absl::FailedPreconditionError(absl::StrCat(path, " exists and is not a socket; refusing to replace it"));
  if (unix_socket_answers(path))
    return absl::AlreadyExistsError(absl::StrCat("another bmserverd is already answering on ", path));
  if (unlink(path.c_str()) != 0)
    return absl::PermissionDeniedError(absl::StrCat("cannot remove stale socket ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

// The private directory a unix socket is bound in before it is published (see ControlServer::start).
class StagedSocket {
 public:
  static absl::StatusOr<StagedSocket> make(const std::string& socket_path) {
    std::string dir = std::filesystem::path(socket_path).parent_path().string();
    std::string templ = dir + "/.bmsock-XXXXXX";
    // sun_path holds 108 bytes with the terminating NUL.
    if (templ.size() + 2 >= sizeof(sockaddr_un{}.sun_path))
      return absl::InvalidArgumentError(absl::StrCat("the socket directory ", dir, " is too long a path (",
                                                     templ.size() + 2, " bytes with the staging name, the limit is ",
                                                     sizeof(sockaddr_un{}.sun_path) - 1, ")"));
    if (mkdtemp(templ.data()) == nullptr)  // mkdtemp makes it 0700
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create a staging directory in ", dir, ": ", std::strerror(errno)));
    return StagedSocket(templ, socket_path);
  }
  StagedSocket(StagedSocket&& other) noexcept
      : dir_(std::exchange(other.dir_, "")), socket_path_(std::move(other.socket_path_)) {}
  StagedSocket(const StagedSocket&) = delete;
  StagedSocket& operator=(const StagedSocket&) = delete;
  ~StagedSocket() {
    if (dir_.empty()) return;
    unlink(bind_path().c_str());
    rmdir(dir_.c_str());
  }

  std::string bind_path() const { return dir_ + "/s"; }

  // Gives the bound socket its mode, then moves it to the published path in one rename.
  absl::Status publish(mode_t mode) {
    std::string bound = bind_path();
    if (chmod(bound.c_str(), mode) != 0)
      return absl::PermissionDeniedError(absl::StrCat("cannot set the mode of ", bound, ": ", std::strerror(errno)));
    if (rename(bound.c_str(), socket_path_.c_str()) != 0)
      return absl::PermissionDeniedError(
          absl::StrCat("cannot move the control socket to ", socket_path_, ": ", std::strerror(errno)));
    return absl::OkStatus();
  }

 private:
  StagedSocket(std::string dir, std::string socket_path) : dir_(std::move(dir)), socket_path_(std::move(socket_path)) {}
  std::string dir_;
  std::string socket_path_;
};

}  // namespace

bool unix_socket_answers(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool answers = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return answers;
}

ControlServer::ControlServer() = default;
ControlServer::~ControlServer() {
  shutdown(0);
}

absl::Status ControlServer::start(const ControlServerOptions& options, const std::vector<grpc::Service*>& services) {
  std::shared_ptr<grpc::ServerCredentials> creds;
  if (options.address.is_tcp()) {
    absl::StatusOr<std::string> cert = read_file(options.tls_cert_file, "TLS certificate");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = read_file(options.tls_key_file, "TLS key");
    if (!key.ok()) return key.status();
    absl::StatusOr<std::string> token = read_token(options.token_file);
    if (!token.ok()) return token.status();
    grpc::SslServerCredentialsOptions ssl;
    ssl.pem_key_cert_pairs.push_back({*key, *cert});
    creds = grpc::SslServerCredentials(ssl);
    creds->SetAuthMetadataProcessor(std::make_shared<TokenAuthProcessor>(*token));
  } else {
    if (absl::Status s = prepare_unix_socket(options.address.unix_path, options.user_mode); !s.ok()) return s;
    creds = grpc::InsecureServerCredentials();  // the socket's file mode is the access control
  }

  // gRPC creates the socket with the process umask, so it is bound inside a private 0700 staging directory where
  // nobody else can reach it, given its mode there, and only then renamed to where clients look.
  std::optional<StagedSocket> staged;
  std::string target = options.address.grpc_target();
  if (!options.address.is_tcp()) {
    absl::StatusOr<StagedSocket> made = StagedSocket::make(options.address.unix_path);
    if (!made.ok()) return made.status();
    staged.emplace(*std::move(made));
    target = "unix:" + staged->bind_path();
  }

  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(target, creds, &selected_port);
  builder.SetMaxReceiveMessageSize(16 << 20);
  for (grpc::Service* service : services) builder.RegisterService(service);
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || (options.address.is_tcp() && selected_port == 0)) {
    server_.reset();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.address.grpc_target(), " (address in use, or not permitted)"));
  }
  if (staged) {
    if (absl::Status s = staged->publish(options.user_mode ? 0600 : 0660); !s.ok()) {
      shutdown(0);
      return s;
    }
    socket_path_ = options.address.unix_path;
  }
  return absl::OkStatus();
}

void ControlServer::shutdown(int grace_seconds) {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(grace_seconds));
  server_->Wait();
  server_.reset();
  if (!socket_path_.empty()) {
    unlink(socket_path_.c_str());
    socket_path_.clear();
  }
}

}  // namespace bm::daemon::control
