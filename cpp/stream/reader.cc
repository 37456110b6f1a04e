#include "stream/reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "stream/hash.h"
#include "tensor.h"

namespace onnxstream {

static const char kMagic[8] = {'O', 'N', 'X', 'S', 'T', 'R', 'M', '1'};
static const uint64_t kChunk = 8u << 20;  // read and drop the page cache in 8 MB steps

WeightBuffer::~WeightBuffer() {
  std::free(data);
  if (owner) {
    std::lock_guard<std::mutex> lock(owner->mu);
    owner->held -= nbytes;
    owner->cv.notify_all();
  }
}

WeightReader::WeightReader(const std::string& path, std::vector<WeightEntry> entries, uint64_t budget_bytes)
    : path_(path), entries_(std::move(entries)), budget_(budget_bytes) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error("cannot open weights file " + path + ": " + std::strerror(errno));
  char magic[8] = {};
  struct stat st;
  if (::pread(fd_, magic, 8, 0) != 8 || std::memcmp(magic, kMagic, 8) != 0 || fstat(fd_, &st) != 0) {
    ::close(fd_);
    throw Error(path + " is not an onnxstream weights file (bad header)");
  }
  const uint64_t size = (uint64_t)st.st_size;
  for (const WeightEntry& e : entries_) {
    if (e.nbytes > size || e.offset > size - e.nbytes) {  // (no overflow: graph.json is untrusted)
      ::close(fd_);
      throw Error("weights file " + path + " is truncated: tensor '" + e.name + "' needs bytes up to " +
                  std::to_string(e.offset) + " + " + std::to_string(e.nbytes) + " but the file has " +
                  std::to_string(size));
    }
  }
  posix_fadvise(fd_, 0, 0, POSIX_FADV_SEQUENTIAL);
}

WeightReader::~WeightReader() {
  stop();
  if (fd_ >= 0) ::close(fd_);
}

std::shared_ptr<WeightBuffer> WeightReader::allocate(uint64_t nbytes) {
  if (nbytes > (uint64_t)SIZE_MAX - 64) return nullptr;  // a 32-bit board cannot hold it
  auto buf = std::make_shared<WeightBuffer>();
  size_t alloc = (nbytes + 63) / 64 * 64;
  buf->data = static_cast<uint8_t*>(std::aligned_alloc(64, alloc ? alloc : 64));
  if (!buf->data) return nullptr;
  buf->nbytes = nbytes;
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->held += nbytes;
  if (state_->held > state_->peak_held) state_->peak_held = state_->held;
  buf->owner = state_;  // from here on the destructor returns the bytes to the budget
  return buf;
}

bool WeightReader::pread_all(uint8_t* dst, uint64_t nbytes, uint64_t offset, const std::string& name,
                             std::string* error) {
  uint64_t done = 0;
  while (done < nbytes) {
    uint64_t want = std::min<uint64_t>(kChunk, nbytes - done);
    ssize_t got = ::pread(fd_, dst + done, want, (off_t)(offset + done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      *error = "cannot read tensor '" + name + "' from " + path_ + ": " +
               (got < 0 ? std::strerror(errno) : "unexpected end of file (truncated?)");
      return false;
    }
    // Drop what we just read from the page cache: the copy in our buffer is the only one we need.
    posix_fadvise(fd_, (off_t)(offset + done), got, POSIX_FADV_DONTNEED);
    done += (uint64_t)got;
  }
  std::lock_guard<std::mutex> lock(state_->mu);
  bytes_read_ += nbytes;
  return true;
}

std::shared_ptr<WeightBuffer> WeightReader::read_now(int id, std::string* error) {
  const WeightEntry& e = entries_[id];
  auto buf = allocate(e.nbytes);
  if (!buf) {
    *error = "out of memory reading tensor '" + e.name + "' (" + std::to_string(e.nbytes) + " bytes)";
    return nullptr;
  }
  if (!pread_all(buf->data, e.nbytes, e.offset, e.name, error)) return nullptr;
  if (xxh64(buf->data, e.nbytes) != e.hash) {
    *error = "checksum mismatch in tensor '" + e.name + "' of " + path_ + ": the weights file is corrupt";
    return nullptr;
  }
  return buf;
}

std::shared_ptr<WeightBuffer> WeightReader::read_rows(int id, uint64_t row_nbytes, uint64_t rows_per_block,
                                                      const std::vector<uint64_t>& block_hashes,
                                                      const std::vector<int64_t>& rows) {
  check(id >= 0 && id < (int)entries_.size(), "weight id out of range");
  const WeightEntry& e = entries_[id];
  check(row_nbytes > 0 && e.nbytes % row_nbytes == 0 && rows_per_block > 0,
        "row table of tensor '" + e.name + "' is described inconsistently");
  const uint64_t n_rows = e.nbytes / row_nbytes, block_rows = std::min(rows_per_block, std::max<uint64_t>(n_rows, 1));
  check(block_hashes.size() == (n_rows == 0 ? 0 : (n_rows - 1) / rows_per_block + 1),
        "row table of tensor '" + e.name + "' has " + std::to_string(block_hashes.size()) + " block checksums for " +
            std::to_string(n_rows) + " rows in blocks of " + std::to_string(rows_per_block));
  check(rows.size() <= (uint64_t)SIZE_MAX / row_nbytes, "too many rows gathered from tensor '" + e.name + "'");
  auto out = allocate(rows.size() * row_nbytes);
  check(out != nullptr, "out of memory gathering rows of tensor '" + e.name + "'");
  std::vector<uint8_t> block(block_rows * row_nbytes);  // <= the tensor, however big rows_per_block claims to be
  int64_t loaded = -1;
  std::string error;
  // Visit rows in block order so each block is read (and verified) once.
  std::vector<size_t> order(rows.size());
  for (size_t i = 0; i < rows.size(); i++) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return rows[a] < rows[b]; });
  for (size_t i : order) {
    int64_t r = rows[i];
    check(r >= 0 && (uint64_t)r < n_rows, "row " + std::to_string(r) + " out of range for tensor '" + e.name + "'");
    int64_t b = r / (int64_t)rows_per_block;
    if (b != loaded) {
      uint64_t first = (uint64_t)b * rows_per_block, count = std::min(rows_per_block, n_rows - first);
      if (!pread_all(block.data(), count * row_nbytes, e.offset + first * row_nbytes, e.name, &error)) throw Error(error);
      if (xxh64(block.data(), count * row_nbytes) != block_hashes[b])
        throw Error("checksum mismatch in tensor '" + e.name + "' (rows " + std::to_string(first) + "..) of " + path_ +
                    ": the weights file is corrupt");
      loaded = b;
    }
    std::memcpy(out->data + i * row_nbytes, block.data() + (r - loaded * (int64_t)rows_per_block) * row_nbytes, row_nbytes);
  }
  return out;
}

void WeightReader::start(std::vector<int> order) {
  stop();
  for (int id : order)
    if (id < 0 || id >= (int)entries_.size()) throw Error("weight id out of range");
  std::lock_guard<std::mutex> lock(state_->mu);
  order_ = std::move(order);
  slots_.assign(order_.size(), Slot());
  consume_pos_ = 0;
  cancel_ = false;
  // (no thread for an empty order: a model whose weights are all resident would pay a thread's start and join,
  // 0.1-0.2 ms, on every run)
  if (budget_ > 0 && !order_.empty()) worker_ = std::thread([this] { worker_loop(); });
}

void WeightReader::worker_loop() {
  for (size_t pos = 0;; pos++) {
    int id;
    {
      std::unique_lock<std::mutex> lock(state_->mu);
      // Read ahead while under budget; the tensor the run waits for next is always allowed.
      state_->cv.wait(lock, [&] {
        return cancel_ || pos >= order_.size() || pos <= consume_pos_ ||
               state_->held + entries_[order_[pos]].nbytes <= budget_;
      });
      if (cancel_ || pos >= order_.size()) return;
      id = order_[pos];
    }
    std::string error;
    auto buf = read_now(id, &error);
    std::lock_guard<std::mutex> lock(state_->mu);
    if (cancel_) return;
    slots_[pos].buf = std::move(buf);
    slots_[pos].error = std::move(error);
    slots_[pos].done = true;
    state_->cv.notify_all();
  }
}

std::shared_ptr<WeightBuffer> WeightReader::get(int id) {
  check(id >= 0 && id < (int)entries_.size(), "weight id out of range");
  std::shared_ptr<WeightBuffer> buf;
  std::string error;
  {
    std::unique_lock<std::mutex> lock(state_->mu);
    bool in_order = worker_.joinable() && consume_pos_ < order_.size() && order_[consume_pos_] == id;
    if (in_order) {
      size_t pos = consume_pos_;
      state_->cv.wait(lock, [&] { return slots_[pos].done; });
      buf = std::move(slots_[pos].buf);
      error = std::move(slots_[pos].error);
      consume_pos_++;
      state_->cv.notify_all();
    }
  }
  if (!buf && error.empty()) buf = read_now(id, &error);  // not prefetched: read it here
  if (!error.empty()) throw Error(error);
  return buf;
}

void WeightReader::stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    cancel_ = true;
    state_->cv.notify_all();
  }
  if (worker_.joinable()) worker_.join();
  std::vector<Slot> unused;  // prefetched buffers nobody asked for; freed outside the lock
  std::lock_guard<std::mutex> lock(state_->mu);
  unused.swap(slots_);
  order_.clear();
}

}  // namespace onnxstream
