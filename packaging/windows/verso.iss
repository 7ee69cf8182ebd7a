; Inno Setup 6 script for Verso on Windows (x64). Not built or run on the project's Linux
; build machine: build on Windows with packaging\windows\build.ps1, which runs PyInstaller
; (packaging\build.py) and then compiles this script:
;   "%ProgramFiles(x86)%\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\verso.iss
; Paths are relative to this file. Output: dist\Verso-<version>-windows-x64-setup.exe.
; Installs per user by default (no administrator rights needed; the dialog offers all users).
; Chats and settings live in the user's AppData folder and are kept on uninstall.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif

[Setup]
AppId={{6F2B8B7E-4C1D-4E59-9B0B-7A5E2D3C9F41}
AppName=Verso
AppVersion={#AppVersion}
AppVerName=Verso {#AppVersion}
AppPublisher=Verso
DefaultDirName={autopf}\Verso
DefaultGroupName=Verso
DisableProgramGroupPage=yes
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
MinVersion=10.0
OutputDir=..\..\dist
OutputBaseFilename=Verso-{#AppVersion}-windows-x64-setup
SetupIconFile=..\..\build\pyinstaller\icons\verso.ico
UninstallDisplayIcon={app}\verso.exe
UninstallDisplayName=Verso
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
CloseApplications=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
; The whole PyInstaller one-folder bundle: verso.exe and _internal\ (Python, Qt, llama.cpp
; DLLs, the default model, assets).
Source: "..\..\dist\verso\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[InstallDelete]
; an upgrade replaces the bundle completely (no stale DLLs from an older llama.cpp)
Type: filesandordirs; Name: "{app}\_internal"

[Icons]
Name: "{autoprograms}\Verso"; Filename: "{app}\verso.exe"
Name: "{autodesktop}\Verso"; Filename: "{app}\verso.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\verso.exe"; Description: "{cm:LaunchProgram,Verso}"; Flags: nowait postinstall skipifsilent
